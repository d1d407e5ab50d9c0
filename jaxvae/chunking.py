"""Images per compiled step: the chunked map over a batch, and the per-backend default sizes.

On the CPU the convolutions run fastest in chunks of 8-16 images (lax.map), measured per model
(`jaxvae.models` registry, `cpu_chunk_size`; benchmarks/schedule.py); on accelerators the whole
batch is one step. `batch_size` picks the inputs per compiled call of the streaming modes the
same way (64 on the CPU, 1,024 on accelerators). `resolve` turns a user's `chunk_size` (0 = this default) into the number the
engine runs with, once, where a model is loaded (jaxvae.api); the engine itself never guesses.
"""

import jax
import jax.numpy as jnp

from jaxvae import models


def resolve(chunk_size: int, model_name: str, backend: str | None = None) -> int:
  """`chunk_size` when > 0, else the model's CPU chunk size on the CPU and 0 (whole batch)
  elsewhere."""
  if chunk_size < 0:
    raise ValueError(f"chunk_size must be >= 0, got {chunk_size}")
  if chunk_size:
    return int(chunk_size)
  if (backend or jax.default_backend()) != "cpu":
    return 0
  return models.get_info(model_name).cpu_chunk_size


CPU_BATCH = 64  # Inputs per compiled call on the CPU: larger batches gain nothing there.
# On an NVIDIA H200 (benchmarks/gpu.py, K=10, 2026-11-26) Beta-VAE's variations ran at 187,000
# images/s with 64 inputs per call, 401,000 with 256, 618,000 with 1,024 and 837,000 with 4,096
# (vanilla 190,000 / 366,000 / 508,000 / 661,000). 1,024 takes most of that gain and stays within
# a default generate shard (1,000 sources at K=10), which 4,096 would pad fourfold.
ACCELERATOR_BATCH = 1024


def batch_size(requested: int, backend: str | None = None) -> int:
  """`requested` when > 0, else CPU_BATCH on the CPU and ACCELERATOR_BATCH on GPUs and TPUs."""
  if requested < 0:
    raise ValueError(f"batch_size must be >= 0, got {requested}")
  if requested:
    return int(requested)
  return CPU_BATCH if (backend or jax.default_backend()) == "cpu" else ACCELERATOR_BATCH


def map_chunks(fn, x: jax.Array, chunk_size: int):
  """fn over the leading axis of x in chunks with lax.map (0: one call on all of x); the padding
  of a last partial chunk is sliced off again."""
  n = x.shape[0]
  if chunk_size <= 0 or chunk_size >= n:
    return fn(x)
  pad = -n % chunk_size
  xs = jnp.concatenate([x, jnp.zeros((pad, *x.shape[1:]), x.dtype)]) if pad else x
  out = jax.lax.map(fn, xs.reshape(-1, chunk_size, *x.shape[1:]))
  return jax.tree.map(lambda a: a.reshape(-1, *a.shape[2:])[:n], out)
