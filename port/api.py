"""The port as a function: resolve the source, convert, check, optionally verify, write Orbax."""

import importlib
import os
from typing import Any, Callable, NamedTuple

import jax
import numpy as np

from jaxvae import checkpoint, outputs
from port import convert, sources, tables, verify
from port.keras import mapping as keras_mapping, readers as keras_readers, tables as keras_tables
from port.keras import verify as keras_verify

PORT_VERSION = "2.0"  # 2.0: file digests in jaxvae.json.
TOLERANCE = verify.TOLERANCE
PORT_ERRORS = (sources.SourceError, convert.PortError, checkpoint.CheckpointError,
               FileExistsError, ValueError)

# Auxiliary networks (not VAEs): kind -> module in port/ with
#   optionally read(path, log) -> the source's tensors (default sources.load_state_dict; read
#     once, then given to both of:)
#   convert(tensors, log) -> (variables, extra_metadata)
#   max_abs_diffs(tensors, variables, log) -> {name: difference} against the original (max abs,
#     or relative to the output's norm where the module says so), each within TOLERANCE
#   and optionally resolve(source) -> local path, for sources that are not plain files.
AUX_NETWORKS: dict[str, str] = {"mtcnn": "port.mtcnn", "inception": "port.inception",
                                "vgg19": "port.vgg19"}

Log = Callable[[str], None]


class PortResult(NamedTuple):
  out_dir: str | None  # None when verification failed and nothing was written.
  sha256: str
  diffs: dict[str, float] | None  # Max abs differences against the original, with --verify.
  verified: bool


def known_models() -> tuple[str, ...]:
  return (*tables.TORCH_MODELS, *keras_tables.KERAS_MODELS, *AUX_NETWORKS)


def port(model_name: str | None, source: str, out_dir: str, check_parity: bool = False,
         force: bool = False, log: Log = lambda s: None) -> PortResult:
  """Converts `source` for `model_name` (inferred from a published name) into `out_dir`.

  With `check_parity`, the original (torch, or Keras for pvae) and the port run on the same
  inputs first, and nothing is written when any difference exceeds TOLERANCE or is not finite.
  """
  published = sources.PUBLISHED.get(source)
  if model_name is None:
    if published is None:
      raise ValueError("--model is required unless --source is a published name "
                       f"({', '.join(sources.PUBLISHED)})")
    model_name = published.model
  if published is not None and published.model != model_name:
    raise ValueError(f"{source} is a {published.model} checkpoint, not {model_name}")
  if model_name not in known_models():
    raise ValueError(f"unknown model {model_name!r}; one of {', '.join(known_models())}")
  if os.path.exists(out_dir) and not force:
    raise FileExistsError(f"{out_dir} already exists; pass --force to overwrite it")
  if os.path.exists(out_dir) and not os.path.isdir(out_dir):
    raise FileExistsError(f"{out_dir} exists and is not a directory; remove it or choose "
                          "another --out")
  if model_name in AUX_NETWORKS:
    return _port_aux(model_name, source, out_dir, check_parity, force, log)
  if model_name in keras_tables.KERAS_MODELS:
    return _port_keras(model_name, source, out_dir, check_parity, force, log)

  path, _ = sources.resolve(source)
  sha256 = outputs.sha256_file(path)
  log(f"source: {source} -> {path} (sha256 {sha256})")
  state_dict = sources.load_state_dict(path, log)
  converted = convert.convert(model_name, state_dict)
  log(f"converted {len(tables.TORCH_MODELS[model_name].table)} tensors into {model_name} "
      f"(latent_dim={converted.model.latent_dim})")
  if converted.ignored:
    log(f"ignored {len(converted.ignored)} unused tensors of the original: "
        + ", ".join(converted.ignored))

  diffs = None
  if check_parity:
    diffs = verify.max_abs_diffs(model_name, state_dict, converted.model, converted.variables)
    log("parity vs torch (max abs diff): " + _listing(diffs))
    if not _within(diffs):
      return PortResult(None, sha256, diffs, False)
  return _save(model_name, source, sha256, converted, out_dir, diffs, check_parity, force, log)


def _listing(diffs: dict[str, float]) -> str:
  return ", ".join(f"{k} {v:.3g}" for k, v in diffs.items())


def _within(diffs: dict[str, float]) -> bool:
  """Every difference finite and within TOLERANCE (a NaN fails, unlike `NaN > tol`)."""
  return all(np.isfinite(v) and v <= TOLERANCE for v in diffs.values())


def _port_keras(model_name: str, source: str, out_dir: str, check_parity: bool, force: bool,
                log: Log) -> PortResult:
  """The Keras branch of `port`: read the weights with h5py (or TensorFlow), map by layer order."""
  path = keras_readers.resolve(source)
  sha256 = keras_readers.sha256_of(path)
  log(f"source: {source} -> {path} (sha256 {sha256})")
  read = keras_readers.read(path)
  log(f"format: {read.fmt}; {len(read.layers)} weight layers")
  mapped = keras_mapping.convert_pvae(read)
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
    diffs = keras_verify.max_abs_diffs(converted.model, converted.variables, path, log=log)
    recon_255 = diffs.pop("recon_255")
    log("parity vs keras (max abs diff): " + _listing(diffs)
        + f" (recon on the [0,1] scale; {recon_255:.3g} on the original's 0-255 scale)")
    if not _within(diffs):
      return PortResult(None, sha256, diffs, False)
  return _save(model_name, source, sha256, converted, out_dir, diffs, check_parity, force, log,
               {"source_format": read.fmt, "keras_layer_mapping": mapped.mapping})


def _port_aux(kind: str, source: str, out_dir: str, check_parity: bool, force: bool,
              log: Log) -> PortResult:
  """An auxiliary network through its module in AUX_NETWORKS."""
  module = importlib.import_module(AUX_NETWORKS[kind])
  path = module.resolve(source) if hasattr(module, "resolve") else sources.resolve(source)[0]
  sha256 = outputs.sha256_file(path)
  log(f"source: {source} -> {path} (sha256 {sha256})")
  tensors = getattr(module, "read", sources.load_state_dict)(path, log)
  variables, extra = module.convert(tensors, log)
  diffs = None
  if check_parity:
    diffs = module.max_abs_diffs(tensors, variables, log)
    log(f"parity vs the original {kind} (differences): " + _listing(diffs))
    if not _within(diffs):
      return PortResult(None, sha256, diffs, False)
  out_dir = checkpoint.save_tree(out_dir, variables, {
      "kind": kind, "source": source, "source_sha256": sha256, "port_version": PORT_VERSION,
      "parity": diffs, **extra}, force=force)
  _check_round_trip(variables, checkpoint.load_tree(out_dir, _abstract(variables)))
  log(f"wrote {out_dir} (Orbax round trip bit-exact)")
  return PortResult(out_dir, sha256, diffs, check_parity)


def _abstract(variables: Any) -> Any:
  return jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), np.float32), variables)


def _save(model_name, source, sha256, converted, out_dir, diffs, check_parity, force, log,
          extra_metadata: dict | None = None) -> PortResult:
  """Writes the Orbax checkpoint with its metadata and checks the round trip bit for bit."""
  out_dir = checkpoint.save(out_dir, model_name, converted.model, converted.variables, {
      "source": source, "source_sha256": sha256, "port_version": PORT_VERSION,
      "ignored_source_keys": converted.ignored, "parity": diffs, **(extra_metadata or {}),
  }, force=force)
  _check_round_trip(converted.variables, checkpoint.load(out_dir).variables)
  log(f"wrote {out_dir} (Orbax round trip bit-exact)")
  return PortResult(out_dir, sha256, diffs, check_parity)


def _check_round_trip(written: Any, restored: Any) -> None:
  flat_a, flat_b = checkpoint.flatten(written), checkpoint.flatten(restored)
  mismatched = [k for k in flat_a
                if not np.array_equal(np.asarray(flat_a[k]), np.asarray(jax.device_get(flat_b[k])))]
  if mismatched:
    raise checkpoint.CheckpointError(f"Orbax round trip changed: {', '.join(mismatched)}")


def port_published(name: str, out_dir: str, log: Log = lambda s: None) -> str:
  """Ports the published `name` into `out_dir` (the cache), verified against its original."""
  if name not in sources.PUBLISHED:
    raise checkpoint.CheckpointError(
        f"checkpoint {name!r} is neither a directory nor a published name "
        f"({', '.join(sources.PUBLISHED)})")
  log(f"porting published checkpoint {name} into {out_dir} (once)")
  result = port(None, name, out_dir, check_parity=True, force=os.path.exists(out_dir), log=log)
  if result.out_dir is None:
    raise checkpoint.CheckpointError(f"{name}: parity against the original failed: "
                                     f"{result.diffs}")
  return out_dir

