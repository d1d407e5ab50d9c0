"""What every mode shares: the validated run, the loaded model, the inputs, and small helpers."""

import os
import sys
from typing import Any, NamedTuple

import numpy as np

from jaxvae import api, checkpoint, data, models, options


class Context(NamedTuple):
  run: options.Run
  vae: api.VAE
  inputs: data.Inputs | None


def log(msg: str) -> None:
  print(msg, file=sys.stderr, flush=True)


def _progress(done: int, total: int) -> None:
  """A one-line counter on stderr for long input lists."""
  if total >= 20 and (done == total or done % max(1, total // 20) == 0):
    log(f"  read {done}/{total} inputs")


def load_vae(common: options.Common) -> api.VAE:
  """The checkpoint of the run, with config.model's shape-free fields applied."""
  ckpt = common.checkpoint
  metadata = checkpoint.read_metadata(ckpt)
  if metadata["model"] != common.model:
    raise checkpoint.CheckpointError(
        f"{ckpt} holds a {metadata['model']!r} model but the config is for "
        f"{common.model!r}; use configs/{metadata['model']}.py")
  return api.load(ckpt, common.chunk_size, **dict(common.model_fields))


def read_inputs(spec: str, model_name: str, align: str) -> data.Inputs:
  inputs = data.load(spec, models.get_info(model_name).celeba_box, _progress, align)
  for path, why in inputs.skipped:
    log(f"warning: skipped {path}: {why}")
  return inputs


def check_grid_size(images: int, what: str) -> None:
  """A single-result mode draws and holds all its images: refuse more than it can show."""
  if images > options.MAX_GRID_IMAGES:
    raise options.ConfigError(
        f"{what} would draw {images} images into one grid and NPZ (limit "
        f"{options.MAX_GRID_IMAGES}); use --mode=generate for large runs, which streams them "
        "into sharded records")


def setup(run: options.Run, with_inputs: bool = True) -> Context:
  inputs = (read_inputs(run.common.input, run.common.model, run.common.align) if with_inputs
            else None)
  return Context(run, load_vae(run.common), inputs)


def mse(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Mean squared error over the last three axes, on [0, 1]."""
  return np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2, axis=(-3, -2, -1))


def short(name: str) -> str:
  return os.path.splitext(os.path.basename(name.replace(data.BUNDLED_PREFIX, "")))[0][:14]


def files(mode: str) -> list[str]:
  return [f"{mode}.png", f"{mode}.npz"]


def base_summary(ctx: Context) -> dict[str, Any]:
  summary = {"checkpoint": ctx.run.common.checkpoint, "model": ctx.vae.name,
             "postprocess": ctx.run.common.postprocess}
  if ctx.inputs is not None:
    summary |= {"names": ctx.inputs.names,
                "skipped": [{"input": p, "reason": why} for p, why in ctx.inputs.skipped]}
  return summary
