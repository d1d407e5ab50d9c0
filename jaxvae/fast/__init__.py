"""Exact inference reformulations of the models, for fast encoding and decoding.

The flax modules in jaxvae/models/ are the reference (they are what the parity tests compare
against the originals); the fast path computes the same functions with fewer FLOPs and layouts
that XLA's CPU backend runs well. Every rewrite is exact in real arithmetic; in fp32 the results
stay within ~1e-6 of the reference modules (tests/test_fast.py asserts 1e-5 against them and
against the torch originals). Rewrites (jaxvae/fast/kernels.py, products.py):
- BatchNorm (inference) folded into the preceding conv / transposed conv.
- Phase decomposition of every 2x up-sampling layer ("scatter" and "window" forms).
- Karatsuba form of the Vanilla VAE's transposed convs, Winograd F(2, 2) form of the encoders'
  stride-2 k4 p1 convs.
- "dense1": the decoder's first Linear and its first up-sampling block are affine up to the first
  nonlinearity, so they collapse into ONE Linear at prepare time (not for the PVAE, whose
  decoder Dense has a ReLU).
- The encoders' NCHW flatten is folded into fc_mu / fc_var rows, and both heads are one matmul.

Each model's recipe is a module (jaxvae/fast/<model>.py, see base.py) named by its registry
entry; a model without one has no fast path (`for_inference` then keeps the reference variables,
which jaxvae.sampling runs through the flax module).

Schedule: the convolutions run in chunks of `chunk_size` images (lax.map; small chunks are what
XLA:CPU runs fastest), while the dense layers (dense1, the encoder heads) and the decoder's last
nonlinearity run once on the whole batch: their weights are read once instead of once per chunk,
and the transcendental runs on one contiguous array (benchmarks/README.md: Vanilla VAE
1.15-1.23x, Beta-VAE 1.22-1.26x images/s).

API (pure and jittable; `model` is the reference module, hashable and static):

    params = prepare(model, variables)                  # once per checkpoint; idempotent
    mean, logvar = encode(model, params, x, chunk_size)  # x in the model's input range, [B, 64, 64, 3]
    y = decode(model, params, z, chunk_size)             # [N, 64, 64, 3] in the model's output range

encode/decode also accept raw `variables` (prepared inside the trace: the folding then runs once
per call, ~20 ms for DFC-VAE on a 2-core CPU).
"""

import importlib
from types import ModuleType

import flax.linen as nn
import jax

from jaxvae import chunking, models
from jaxvae.fast.base import Prepared

__all__ = ["Prepared", "recipe", "prepare", "prepare_jit", "for_inference", "encode", "decode"]


def recipe(model: nn.Module) -> ModuleType | None:
  """The fast-path recipe module of `model`'s registry entry, or None."""
  name = models.get_info(models.name_of(model)).fast_recipe
  return importlib.import_module(name) if name else None


def _recipe_or_fail(model: nn.Module) -> ModuleType:
  found = recipe(model)
  if found is None:
    raise ValueError(f"no fast path for {type(model).__name__}; run the reference module")
  return found


def prepare(model: nn.Module, variables) -> Prepared:
  """Folds BatchNorm, builds the rewritten kernels and the dense1 layer. Idempotent, jittable."""
  if isinstance(variables, Prepared):
    return variables
  return _recipe_or_fail(model).prepare(model, variables)


prepare_jit = jax.jit(prepare, static_argnums=0)


def for_inference(model: nn.Module, variables):
  """Prepared weights when `model` has a recipe, else `variables` unchanged (reference path)."""
  if isinstance(variables, Prepared) or recipe(model) is None:
    return variables
  return prepare_jit(model, variables)


def encode(model: nn.Module, params, x: jax.Array,
           chunk_size: int = 0) -> tuple[jax.Array, jax.Array]:
  """x [B, 64, 64, 3] in the model's input range -> (mean, logvar), each [B, L].

  The convolutions run in chunks of `chunk_size` images (0: all at once); the heads run once on
  the whole batch, so their weights are read once.
  """
  steps = _recipe_or_fail(model)
  params = prepare(model, params)
  feats = chunking.map_chunks(lambda c: steps.encoder_convs(model, params, c), x, chunk_size)
  kernel, bias = params.encoder["heads"]
  out = feats @ kernel + bias
  latent = kernel.shape[1] // 2
  return out[:, :latent], out[:, latent:]


def decode(model: nn.Module, params, z: jax.Array, chunk_size: int = 0) -> jax.Array:
  """z [N, L] -> [N, 64, 64, 3] in the model's output range.

  The up-sampling stack runs in chunks of `chunk_size` images (0: all at once); the first dense
  layer and the last nonlinearity run once on the whole batch.
  """
  steps = _recipe_or_fail(model)
  params = prepare(model, params)
  maps = steps.decode_dense(model, params, z)
  y = chunking.map_chunks(lambda c: steps.decode_ups(model, params, c), maps, chunk_size)
  return steps.decode_out(model, y)
