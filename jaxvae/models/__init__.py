"""Registry of the four ported face VAEs: name -> flax module, CelebA crop and value ranges."""

from typing import Any, Mapping, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvae.models.betavae import BetaVAE
from jaxvae.models.dfcvae import DFCVAE
from jaxvae.models.layers import VAEOutput
from jaxvae.models.pvae import PVAE
from jaxvae.models.vanilla import VanillaVAE


class ModelInfo(NamedTuple):
  module: type[nn.Module]
  celeba_box: tuple[int, int, int, int]  # PIL box (left, top, right, bottom) on aligned 178x218
  description: str


MODELS: Mapping[str, ModelInfo] = {
    "vanilla": ModelInfo(VanillaVAE, (0, 20, 178, 198),
                         "Vanilla VAE, Hussam Alafandi (hussamalafandi/VAE-CelebA)"),
    "betavae": ModelInfo(BetaVAE, (0, 30, 178, 208), "Beta-VAE, matthew-liu/beta-vae"),
    "dfcvae": ModelInfo(DFCVAE, (0, 30, 178, 208), "DFC-VAE, matthew-liu/beta-vae"),
    # The Kaggle 64x64 images' crop is not published; the square centre crop is our choice.
    "pvae": ModelInfo(PVAE, (0, 20, 178, 198), "PVAE, Keras plain VAE (arnrob, Kaggle)"),
}

IMAGE_SHAPE = (64, 64, 3)


def get_info(name: str) -> ModelInfo:
  if name not in MODELS:
    raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
  return MODELS[name]


def build(name: str, **fields: Any) -> nn.Module:
  """The module for `name` with dataclass fields (latent_dim, input_range, ...) set."""
  module_cls = get_info(name).module
  known = set(module_cls.__dataclass_fields__) - {"parent", "name"}
  unknown = set(fields) - known
  if unknown:
    raise ValueError(f"model {name!r} has no field(s) {sorted(unknown)}; it has {sorted(known)}")
  return module_cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})


def abstract_variables(model: nn.Module, batch: int = 1) -> Any:
  """The variables tree of `model` as ShapeDtypeStructs, without allocating anything."""
  x = jax.ShapeDtypeStruct((batch, *IMAGE_SHAPE), jnp.float32)
  return jax.eval_shape(lambda x: model.init(jax.random.key(0), x), x)


def init_variables(model: nn.Module, key: jax.Array) -> Any:
  return model.init(key, jnp.zeros((1, *IMAGE_SHAPE), jnp.float32))


def to_model_range(x01: jax.Array, value_range) -> jax.Array:
  """[0, 1] images -> the model's input range."""
  lo, hi = value_range
  return lo + (hi - lo) * x01


def to_unit_range(y: jax.Array, value_range) -> jax.Array:
  """Model outputs in `value_range` -> [0, 1], clipped."""
  lo, hi = value_range
  return jnp.clip((y - lo) / (hi - lo), 0.0, 1.0)


__all__ = ["MODELS", "ModelInfo", "VAEOutput", "BetaVAE", "DFCVAE", "PVAE", "VanillaVAE",
           "build", "get_info", "abstract_variables", "init_variables", "to_model_range",
           "to_unit_range", "IMAGE_SHAPE"]
