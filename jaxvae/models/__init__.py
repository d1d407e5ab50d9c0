"""Registry of the ported face VAEs: one entry per model holds everything the library knows of it.

An entry names the flax module (value ranges are its fields' defaults), the CelebA crop the
original was trained with, the fast-path recipe module (jaxvae/fast/<model>.py; None runs the
reference module) and the images per compiled step on the CPU (benchmarks/schedule.py measured
them). Adding a model: docs/ARCHITECTURE.md.
"""

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
  fast_recipe: str | None = None  # Module of the exact fast path (jaxvae/fast/base.py).
  cpu_chunk_size: int = 16  # Images per compiled decode step on the CPU (jaxvae.chunking).


MODELS: Mapping[str, ModelInfo] = {
    "vanilla": ModelInfo(VanillaVAE, (0, 20, 178, 198),
                         "Vanilla VAE, Hussam Alafandi (hussamalafandi/VAE-CelebA)",
                         "jaxvae.fast.vanilla", 8),
    "betavae": ModelInfo(BetaVAE, (0, 30, 178, 208), "Beta-VAE, matthew-liu/beta-vae",
                         "jaxvae.fast.betavae", 8),
    "dfcvae": ModelInfo(DFCVAE, (0, 30, 178, 208), "DFC-VAE, matthew-liu/beta-vae",
                        "jaxvae.fast.dfcvae", 16),
    # The Kaggle 64x64 images' crop is not published; the square centre crop is our choice.
    "pvae": ModelInfo(PVAE, (0, 20, 178, 198), "PVAE, Keras plain VAE (arnrob, Kaggle)",
                      "jaxvae.fast.pvae", 8),
}

IMAGE_SHAPE = (64, 64, 3)


def get_info(name: str) -> ModelInfo:
  if name not in MODELS:
    raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
  return MODELS[name]


def name_of(model: nn.Module) -> str:
  """The registry name of a model instance."""
  for name, info in MODELS.items():
    if type(model) is info.module:
      return name
  raise ValueError(f"{type(model).__name__} is not a registered model; known: {', '.join(MODELS)}")


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
           "build", "get_info", "name_of", "abstract_variables", "init_variables", "to_model_range",
           "to_unit_range", "IMAGE_SHAPE"]
