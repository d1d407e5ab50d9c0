"""One function per `main.py --mode`: load, generate, and write PNG grid, NPZ and summary.json."""

import dataclasses
import os
import sys
import time
from typing import Callable, NamedTuple

import jax
import ml_collections
import numpy as np

from jaxvae import (checkpoint, data, evaluate as evaluation, fast, metrics, models, outputs,
                    postprocess, sampling)


class Setup(NamedTuple):
  name: str  # model name
  model: object
  variables: object
  inputs: data.Inputs | None


def _log(msg: str) -> None:
  print(msg, file=sys.stderr, flush=True)


def _progress(done: int, total: int) -> None:
  """A one-line counter on stderr for long input lists."""
  if total >= 20 and (done == total or done % max(1, total // 20) == 0):
    _log(f"  read {done}/{total} inputs")


def load_model(config: ml_collections.ConfigDict):
  """The checkpoint named by config.checkpoint, with config.model's shape-free fields applied."""
  if not config.checkpoint:
    raise checkpoint.CheckpointError(
        "config.checkpoint is empty: pass --config.checkpoint=DIR (a directory written by "
        "`python -m port`)")
  fields = {k: v for k, v in config.model.items() if k != "name"}
  metadata = checkpoint.read_metadata(config.checkpoint)
  if metadata["model"] != config.model.name:
    raise checkpoint.CheckpointError(
        f"{config.checkpoint} holds a {metadata['model']!r} model but the config is for "
        f"{config.model.name!r}; use configs/{metadata['model']}.py")
  return checkpoint.load(config.checkpoint, **fields)


def _setup(config, with_inputs: bool = True) -> Setup:
  """The model with its weights prepared for the fast path, and the inputs."""
  loaded = load_model(config)
  inputs = None
  if with_inputs:
    inputs = read_inputs(config.input, config.model.name)
  return Setup(config.model.name, loaded.model, fast.prepare_jit(loaded.model, loaded.variables),
               inputs)


def read_inputs(spec: str, model_name: str) -> data.Inputs:
  inputs = data.load(spec, models.get_info(model_name).celeba_box, _progress)
  for path, why in inputs.skipped:
    _log(f"warning: skipped {path}: {why}")
  return inputs


def _options(config) -> sampling.Options:
  return sampling.Options(temperature=0.0 if config.deterministic else float(config.temperature),
                          input_noise_std=float(config.input_noise_std),
                          rule=config.sampling_rule, chunk_size=int(config.chunk_size),
                          postprocess=config.postprocess)


def _mse(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Mean squared error over the last three axes, on [0, 1]."""
  return np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2, axis=(-3, -2, -1))


def _short(name: str) -> str:
  return os.path.splitext(os.path.basename(name.replace(data.BUNDLED_PREFIX, "")))[0][:14]


def _finish(workdir: str, mode: str, picture: np.ndarray, arrays: dict, summary: dict) -> dict:
  outputs.write_png(os.path.join(workdir, f"{mode}.png"), picture)
  outputs.write_npz(os.path.join(workdir, f"{mode}.npz"), **arrays)
  outputs.update_summary(workdir, mode, summary)
  _log(f"wrote {workdir}/{mode}.png, {mode}.npz and summary.json")
  return summary


def _files(mode: str) -> tuple[str, str]:
  return f"{mode}.png", f"{mode}.npz"


def reconstruct(config, workdir: str, overwrite: bool = False) -> dict:
  """Deterministic reconstructions decode(mean): originals above reconstructions."""
  outputs.check_free(workdir, _files("reconstruct"), "reconstruct", overwrite)
  s = _setup(config)
  x = s.inputs.images
  recon = np.asarray(sampling.reconstruct(s.model, s.variables, x, int(config.chunk_size),
                                          config.postprocess))
  mse = _mse(recon, x)
  picture = outputs.grid(np.stack([x, recon]), [_short(n) for n in s.inputs.names],
                         ["input", "recon"],
                         captions=[[""] * len(x), [f"mse {m:.4f}" for m in mse]])
  return _finish(workdir, "reconstruct", picture,
                 {"names": np.array(s.inputs.names), "inputs": x, "reconstructions": recon},
                 {"checkpoint": config.checkpoint, "model": s.name, "names": s.inputs.names,
                  "postprocess": config.postprocess, "mse": mse.tolist(),
                  "mean_mse": float(mse.mean()),
                  "skipped": [p for p, _ in s.inputs.skipped]})


def variations(config, workdir: str, overwrite: bool = False) -> dict:
  """num_variations samples per input: one row per input (original, reconstruction, variations)."""
  outputs.check_free(workdir, _files("variations"), "variations", overwrite)
  options = _options(config)
  if config.num_variations < 1:
    raise ValueError(f"num_variations must be >= 1, got {config.num_variations}")
  s = _setup(config)
  x = s.inputs.images
  recon = np.asarray(sampling.reconstruct(s.model, s.variables, x, options.chunk_size,
                                          options.postprocess))
  start = time.perf_counter()
  var = np.asarray(sampling.variations(s.model, s.variables, x, jax.random.key(config.seed),
                                       int(config.num_variations), options))
  seconds = time.perf_counter() - start
  mse_recon, mse_var = _mse(recon, x), _mse(var, x[:, None])
  diversity = np.asarray(metrics.diversity(var, net=None).pixel).tolist()
  tiles = np.concatenate([x[:, None], recon[:, None], var], axis=1)
  picture = outputs.grid(
      tiles, ["input", "recon"] + [f"var {k + 1}" for k in range(var.shape[1])],
      [_short(n) for n in s.inputs.names],
      captions=[[""] + [f"{m:.4f}" for m in (mse_recon[i], *mse_var[i])] for i in range(len(x))])
  return _finish(
      workdir, "variations", picture,
      {"names": np.array(s.inputs.names), "inputs": x, "reconstructions": recon,
       "variations": var},
      {"checkpoint": config.checkpoint, "model": s.name, "seed": config.seed,
       "options": options.__dict__, "num_variations": int(config.num_variations),
       "names": s.inputs.names,
       "mse_reconstruction": mse_recon.tolist(), "mse_variations": mse_var.tolist(),
       "diversity_pairwise_rms": diversity,
       "mean_mse_variations": float(mse_var.mean()),
       "mean_diversity_pairwise_rms": float(np.mean(diversity)),
       "seconds_first_call_including_compile": seconds,
       "skipped": [p for p, _ in s.inputs.skipped]})


def sample(config, workdir: str, overwrite: bool = False) -> dict:
  """num_samples faces from the prior N(0, temperature^2 I), eight per row."""
  outputs.check_free(workdir, _files("sample"), "sample", overwrite)
  if config.num_samples < 1:
    raise ValueError(f"num_samples must be >= 1, got {config.num_samples}")
  s = _setup(config, with_inputs=False)
  n, per_row = int(config.num_samples), 8
  faces = np.asarray(sampling.sample(s.model, s.variables, jax.random.key(config.seed), n,
                                     float(config.temperature), int(config.chunk_size),
                                     config.postprocess))
  padded = np.concatenate([faces, np.ones((-n % per_row, *faces.shape[1:]), np.float32)])
  picture = outputs.grid(padded.reshape(-1, per_row, *faces.shape[1:]))
  return _finish(workdir, "sample", picture, {"samples": faces},
                 {"checkpoint": config.checkpoint, "model": s.name, "seed": config.seed,
                  "num_samples": n, "temperature": float(config.temperature),
                  "postprocess": config.postprocess})


def interpolate(config, workdir: str, overwrite: bool = False) -> dict:
  """Latent paths between consecutive inputs: input a, the decoded path, input b."""
  outputs.check_free(workdir, _files("interpolate"), "interpolate", overwrite)
  if config.interpolation_steps < 2:
    raise ValueError(f"interpolation_steps must be >= 2, got {config.interpolation_steps}")
  s = _setup(config)
  x = s.inputs.images
  if len(x) < 2:
    raise data.InputError("--mode=interpolate needs at least two readable input images")
  path = np.asarray(sampling.interpolate(s.model, s.variables, x[:-1], x[1:],
                                         int(config.interpolation_steps), config.interpolation,
                                         int(config.chunk_size), config.postprocess))
  tiles = np.concatenate([x[:-1, None], path, x[1:, None]], axis=1)
  names = [f"{_short(a)}>{_short(b)}" for a, b in zip(s.inputs.names, s.inputs.names[1:])]
  steps = path.shape[1]
  picture = outputs.grid(tiles, ["a"] + [f"t={t:.2f}" for t in np.linspace(0, 1, steps)] + ["b"],
                         names)
  return _finish(workdir, "interpolate", picture,
                 {"names": np.array(s.inputs.names), "inputs": x, "paths": path},
                 {"checkpoint": config.checkpoint, "model": s.name,
                  "method": config.interpolation, "steps": steps, "pairs": names,
                  "postprocess": config.postprocess,
                  "mse_endpoints": [[float(_mse(path[i, 0], x[i])), float(_mse(path[i, -1], x[i + 1]))]
                                    for i in range(len(names))]})


def edit(config, workdir: str, overwrite: bool = False) -> dict:
  """Attribute arithmetic: decode(mu(x) + s * (mean mu(edit_with) - mean mu(edit_without)))."""
  outputs.check_free(workdir, _files("edit"), "edit", overwrite)
  strengths = np.asarray(config.edit_strengths, np.float32).reshape(-1)
  if strengths.size == 0:
    raise ValueError("edit_strengths is empty")
  s = _setup(config)
  with_attr = read_inputs(config.edit_with, s.name)
  without_attr = read_inputs(config.edit_without, s.name)
  chunk = int(config.chunk_size)
  direction = sampling.attribute_direction(s.model, s.variables, with_attr.images,
                                           without_attr.images, chunk)
  edited = np.asarray(sampling.edit(s.model, s.variables, s.inputs.images, direction, strengths,
                                    chunk, config.postprocess))
  tiles = np.concatenate([s.inputs.images[:, None], edited], axis=1)
  picture = outputs.grid(tiles, ["input"] + [f"s={v:g}" for v in strengths],
                         [_short(n) for n in s.inputs.names])
  return _finish(workdir, "edit", picture,
                 {"names": np.array(s.inputs.names), "inputs": s.inputs.images,
                  "edited": edited, "strengths": strengths, "direction": np.asarray(direction)},
                 {"checkpoint": config.checkpoint, "model": s.name,
                  "edit_with": with_attr.names, "edit_without": without_attr.names,
                  "strengths": strengths.tolist(), "postprocess": config.postprocess,
                  "direction_norm": float(np.linalg.norm(np.asarray(direction)))})


def enhance(config, workdir: str, overwrite: bool = False) -> dict:
  """The report's Figure 1: Original | Reconstructed | Enhanced | Dehazed | Final, with MSEs.

  The chain is config.postprocess, or the report's preset when that is empty.
  """
  outputs.check_free(workdir, _files("enhance"), "enhance", overwrite)
  spec = config.postprocess or "report"
  stage_names = postprocess.parse_spec(spec)
  if not stage_names:
    raise ValueError(f"--mode=enhance needs post-processing stages; config.postprocess={spec!r}")
  s = _setup(config)
  x = s.inputs.images
  recon = sampling.reconstruct(s.model, s.variables, x, int(config.chunk_size))
  stages = jax.jit(postprocess.build_pipeline(spec, intermediates=True))(recon)
  labels = {"enhance": "Enhanced", "dehaze": "Dehazed"}  # The report's intermediate columns.
  shown = [(labels[n], np.asarray(out))
           for n, out in zip(stage_names[:-1], stages[:-1]) if n in labels]
  columns = [("Original", x), ("Reconstructed", np.asarray(recon)), *shown,
             ("Final", np.asarray(stages[-1]))]
  mse = {name: _mse(images, x) for name, images in columns[1:]}
  tiles = np.stack([images for _, images in columns], axis=1)
  picture = outputs.grid(tiles, [name for name, _ in columns], [_short(n) for n in s.inputs.names],
                         captions=[[""] + [f"mse {mse[n][i]:.4f}" for n, _ in columns[1:]]
                                   for i in range(len(x))])
  return _finish(workdir, "enhance", picture,
                 {"names": np.array(s.inputs.names),
                  **{name.lower(): images for name, images in columns}},
                 {"checkpoint": config.checkpoint, "model": s.name, "postprocess": spec,
                  "stages": list(stage_names), "names": s.inputs.names,
                  "mse": {n.lower(): m.tolist() for n, m in mse.items()},
                  "mean_mse": {n.lower(): float(m.mean()) for n, m in mse.items()}})


def evaluate(config, workdir: str, overwrite: bool = False) -> dict:
  """Metrics, diversity and per-attribute bias of config.checkpoint and config.evaluate_checkpoints."""
  extra = [c.strip() for c in config.evaluate_checkpoints.split(",") if c.strip()]
  options = dataclasses.replace(_options(config), postprocess="")  # Scored on its own.
  return evaluation.evaluate(config, workdir, [config.checkpoint, *extra], options, overwrite)


MODES: dict[str, Callable[[ml_collections.ConfigDict, str, bool], dict]] = {
    "reconstruct": reconstruct,
    "variations": variations,
    "sample": sample,
    "interpolate": interpolate,
    "edit": edit,
    "enhance": enhance,
    "evaluate": evaluate,
}
