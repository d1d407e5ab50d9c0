"""The port as a function: resolve the source, convert, check, optionally verify, write Orbax."""

import os
from typing import Callable, NamedTuple

import jax
import numpy as np

from jaxvae import checkpoint
from port import convert, keras, sources, tables, verify

PORT_VERSION = "1.0"
TOLERANCE = verify.TOLERANCE
PORT_ERRORS = (sources.SourceError, convert.PortError, checkpoint.CheckpointError,
               FileExistsError, ValueError)


class PortResult(NamedTuple):
  out_dir: str | None  # None when verification failed and nothing was written.
  sha256: str
  diffs: dict[str, float] | None  # Max abs differences against the original, with --verify.
  verified: bool


def port(model_name: str | None, source: str, out_dir: str, check_parity: bool = False,
         force: bool = False, log: Callable[[str], None] = lambda s: None) -> PortResult:
  """Converts `source` for `model_name` (inferred from a published name) into `out_dir`.

  With `check_parity`, the original (torch, or Keras for pvae) and the port run on the same
  inputs first, and nothing is written when any max abs difference exceeds TOLERANCE.
  """
  published = sources.PUBLISHED.get(source)
  if model_name is None:
    if published is None:
      raise ValueError("--model is required unless --source is a published name "
                       f"({', '.join(sources.PUBLISHED)})")
    model_name = published.model
  if published is not None and published.model != model_name:
    raise ValueError(f"{source} is a {published.model} checkpoint, not {model_name}")
  if model_name not in tables.TORCH_MODELS and model_name not in keras.KERAS_MODELS:
    raise ValueError(f"unknown model {model_name!r}; one of "
                     f"{', '.join((*tables.TORCH_MODELS, *keras.KERAS_MODELS))}")
  if os.path.exists(out_dir) and not force:
    raise FileExistsError(f"{out_dir} already exists; pass --force to overwrite it")
  if model_name in keras.KERAS_MODELS:
    return _port_keras(model_name, source, out_dir, check_parity, force, log)

  path, _ = sources.resolve(source)
  sha256 = sources.sha256_of(path)
  log(f"source: {source} -> {path} (sha256 {sha256})")
  state_dict = sources.load_state_dict(path)
  converted = convert.convert(model_name, state_dict)
  log(f"converted {len(tables.TORCH_MODELS[model_name].table)} tensors into {model_name} "
      f"(latent_dim={converted.model.latent_dim})")
  if converted.ignored:
    log(f"ignored {len(converted.ignored)} unused tensors of the original: "
        + ", ".join(converted.ignored))

  diffs = None
  if check_parity:
    diffs = verify.max_abs_diffs(model_name, state_dict, converted.model, converted.variables)
    log("parity vs torch (max abs diff): "
        + ", ".join(f"{k} {v:.3g}" for k, v in diffs.items()))
    if max(diffs.values()) > TOLERANCE:
      return PortResult(None, sha256, diffs, False)
  return _save(model_name, source, sha256, converted, out_dir, diffs, check_parity, force, log)


def _port_keras(model_name: str, source: str, out_dir: str, check_parity: bool, force: bool,
                log: Callable[[str], None]) -> PortResult:
  """The Keras branch of `port`: read the weights with h5py (or TensorFlow), map by layer order."""
  path = keras.resolve(source)
  sha256 = keras.sha256_of(path)
  log(f"source: {source} -> {path} (sha256 {sha256})")
  read = keras.read(path)
  log(f"format: {read.fmt}; {len(read.layers)} weight layers")
  mapped = keras.convert_pvae(read)
  log("mapping (by the architecture's layer order, shapes checked):\n  "
      + "\n  ".join(mapped.mapping))
  log(mapped.config_note)
  converted = mapped.converted
  log(f"converted {len(mapped.mapping)} Keras layers into {model_name} "
      f"(latent_dim={converted.model.latent_dim})")
  if converted.ignored:
    log(f"ignored training state of the original: {', '.join(converted.ignored)}")
  diffs = None
  if check_parity:
    diffs = keras.max_abs_diffs(converted.model, converted.variables, path, log=log)
    recon_255 = diffs.pop("recon_255")
    log("parity vs keras (max abs diff): "
        + ", ".join(f"{k} {v:.3g}" for k, v in diffs.items())
        + f" (recon on the [0,1] scale; {recon_255:.3g} on the original's 0-255 scale)")
    if max(diffs.values()) > TOLERANCE:
      return PortResult(None, sha256, diffs, False)
  return _save(model_name, source, sha256, converted, out_dir, diffs, check_parity, force, log,
               {"source_format": read.fmt, "keras_layer_mapping": mapped.mapping})


def _save(model_name, source, sha256, converted, out_dir, diffs, check_parity, force, log,
          extra_metadata: dict | None = None) -> PortResult:
  """Writes the Orbax checkpoint with its metadata and checks the round trip bit for bit."""
  out_dir = checkpoint.save(out_dir, model_name, converted.model, converted.variables, {
      "source": source, "source_sha256": sha256, "port_version": PORT_VERSION,
      "ignored_source_keys": converted.ignored, **(extra_metadata or {}),
  }, force=force)
  restored = checkpoint.load(out_dir)
  mismatched = [name for name, (a, b) in _paired(converted.variables, restored.variables)
                if not np.array_equal(a, b)]
  if mismatched:
    raise checkpoint.CheckpointError(f"Orbax round trip changed: {', '.join(mismatched)}")
  log(f"wrote {out_dir} (Orbax round trip bit-exact)")
  return PortResult(out_dir, sha256, diffs, check_parity)


def _paired(a, b):
  flat_a, flat_b = checkpoint.flatten(a), checkpoint.flatten(b)
  return [(k, (np.asarray(flat_a[k]), np.asarray(jax.device_get(flat_b[k])))) for k in flat_a]


def ensure_ported(spec: str, log: Callable[[str], None] = lambda s: None) -> str:
  """An Orbax checkpoint directory for `spec`: the directory itself, or a published name's port.

  A published name is downloaded, verified against the torch original and ported once, into
  <cache>/checkpoints/<name>; later calls reuse it.
  """
  if spec in sources.PUBLISHED:
    out_dir = os.path.join(sources.cache_dir(), "checkpoints", spec)
    if not os.path.exists(os.path.join(out_dir, checkpoint.METADATA_FILE)):
      log(f"porting published checkpoint {spec} into {out_dir} (once)")
      result = port(None, spec, out_dir, check_parity=True, force=os.path.exists(out_dir), log=log)
      if result.out_dir is None:
        raise checkpoint.CheckpointError(f"{spec}: parity against torch failed: {result.diffs}")
    return out_dir
  if os.path.isdir(spec):
    return spec
  raise checkpoint.CheckpointError(
      f"checkpoint {spec!r} is neither a directory nor a published name "
      f"({', '.join(sources.PUBLISHED)})")
