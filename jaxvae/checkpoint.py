"""Orbax checkpoints with per-file sha256 digests: atomic save, verified restore by name.

A checkpoint is a directory holding `variables/` (an Orbax StandardCheckpointer tree) and
`jaxvae.json`: what the tree is (`kind`: a VAE `model`, or an auxiliary network), where it came
from, and the sha256 and size of every file under `variables/`. Loading checks every file against
those digests before Orbax reads anything, so a missing, truncated or altered file is named in one
message instead of failing inside tensorstore; then the stored tree is compared with the expected
one by name (missing, unexpected and mis-shaped arrays). Checkpoints written before digests
existed load with a warning (`LegacyCheckpointWarning`).
"""

import json
import os
import shutil
import tempfile
import warnings
from typing import Any, Mapping, NamedTuple

import flax.linen as nn
import jax
import numpy as np

from jaxvae import models, outputs

METADATA_FILE = "jaxvae.json"
VARIABLES_DIR = "variables"
FORMAT_VERSION = 2  # 2: per-file digests of variables/.


class CheckpointError(ValueError):
  """A checkpoint is missing, damaged, malformed, or does not fit its model."""


class LegacyCheckpointWarning(UserWarning):
  """A checkpoint without file digests: it cannot be checked for damage."""


class Loaded(NamedTuple):
  model: nn.Module
  variables: Any  # {"params": ..., "batch_stats": ...}
  metadata: dict


def flatten(tree: Any) -> dict[str, Any]:
  """{'a': {'b': x}} -> {'a/b': x}."""
  flat = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    flat["/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)] = leaf
  return flat


def compare_trees(expected: Mapping[str, Any], actual: Mapping[str, Any]) -> list[str]:
  """Names every missing key, unexpected key and shape mismatch between two flat {name: array} maps."""
  problems = [f"missing: {k} (expected shape {tuple(expected[k].shape)})"
              for k in sorted(set(expected) - set(actual))]
  problems += [f"unexpected: {k} (shape {tuple(actual[k].shape)})"
               for k in sorted(set(actual) - set(expected))]
  problems += [f"shape mismatch: {k}: expected {tuple(expected[k].shape)}, got {tuple(actual[k].shape)}"
               for k in sorted(set(expected) & set(actual))
               if tuple(expected[k].shape) != tuple(actual[k].shape)]
  return problems


def non_finite(variables: Any) -> list[str]:
  """Names of the arrays holding NaN or infinity, with how many such values."""
  return [f"{name} ({int(np.size(a) - np.isfinite(a).sum())} non-finite values)"
          for name, a in flatten(variables).items() if not np.isfinite(np.asarray(a)).all()]


def model_fields(model: nn.Module) -> dict[str, Any]:
  """The dataclass fields that rebuild `model` through `models.build`, as JSON-friendly values."""
  fields = {}
  for name in model.__dataclass_fields__:
    if name in ("parent", "name"):
      continue
    value = getattr(model, name)
    fields[name] = list(value) if isinstance(value, tuple) else value
  return fields


def file_digests(directory: str) -> dict[str, dict[str, Any]]:
  """{relative path: {"sha256", "bytes"}} of every file under `directory`."""
  digests = {}
  for root, _, files in os.walk(directory):
    for name in files:
      path = os.path.join(root, name)
      digests[os.path.relpath(path, directory)] = {"sha256": outputs.sha256_file(path),
                                                   "bytes": os.path.getsize(path)}
  return dict(sorted(digests.items()))


def save_tree(out_dir: str, variables: Any, metadata: Mapping[str, Any],
              force: bool = False) -> str:
  """Writes `variables` (float32) and `metadata` plus file digests into `out_dir`, atomically.

  Everything goes into a temporary sibling folder that replaces `out_dir` only when complete; on
  any failure nothing is left behind. An existing `out_dir` is refused unless `force`; a `force`
  over a regular file is refused too. Arrays with NaN or infinity are refused by name.
  """
  import orbax.checkpoint as ocp  # Imported lazily: orbax is slow to import.

  out_dir = os.path.abspath(out_dir)
  if os.path.exists(out_dir) and not force:
    raise FileExistsError(f"{out_dir} already exists; pass --force to overwrite it")
  if os.path.exists(out_dir) and not os.path.isdir(out_dir):
    raise FileExistsError(f"{out_dir} exists and is not a directory; remove it or choose "
                          "another output")
  bad = non_finite(variables)
  if bad:
    raise CheckpointError("refusing to write non-finite weights: " + "; ".join(bad))
  parent = os.path.dirname(out_dir)
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.tmp-", dir=parent)
  os.chmod(tmp, outputs.default_file_mode(0o777))
  old = tmp + ".old"
  try:
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(os.path.join(tmp, VARIABLES_DIR),
                      jax.tree.map(lambda a: np.asarray(a, np.float32), variables))
    checkpointer.wait_until_finished()
    checkpointer.close()
    full = {"format_version": FORMAT_VERSION, **metadata,
            "digests": file_digests(os.path.join(tmp, VARIABLES_DIR))}
    with open(os.path.join(tmp, METADATA_FILE), "w") as f:
      json.dump(full, f, indent=2)
    if os.path.exists(out_dir):
      os.rename(out_dir, old)
      os.rename(tmp, out_dir)
      shutil.rmtree(old)
    else:
      os.rename(tmp, out_dir)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    if os.path.isdir(old) and not os.path.exists(out_dir):
      os.rename(old, out_dir)  # Put the previous checkpoint back.
    raise
  return out_dir


def read_metadata(ckpt_dir: str, required: tuple[str, ...] = ("model", "model_config")) -> dict:
  """`jaxvae.json` of `ckpt_dir`, with the `required` keys checked."""
  path = os.path.join(ckpt_dir, METADATA_FILE)
  if not os.path.isdir(ckpt_dir):
    raise CheckpointError(f"checkpoint directory {ckpt_dir} does not exist")
  if not os.path.isfile(path):
    raise CheckpointError(f"{ckpt_dir} is not a jaxvae checkpoint: {METADATA_FILE} is missing "
                          "(make one with `python -m port`)")
  try:
    with open(path) as f:
      metadata = json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise CheckpointError(f"{path} is malformed: {e}") from e
  if not isinstance(metadata, dict):
    raise CheckpointError(f"{path} is malformed: not a JSON object")
  missing = [k for k in required if k not in metadata]
  if missing:
    raise CheckpointError(f"{path} is malformed: no {', '.join(missing)}")
  return metadata


def verify_files(ckpt_dir: str, metadata: Mapping[str, Any]) -> bool:
  """Checks every file of `variables/` against the recorded digests; False for a legacy checkpoint.

  Raises CheckpointError naming every missing, unexpected, truncated or altered file.
  """
  recorded = metadata.get("digests")
  if recorded is None:
    return False
  if not isinstance(recorded, dict):
    raise CheckpointError(f"{ckpt_dir}/{METADATA_FILE} is malformed: digests is not a mapping")
  root = os.path.join(ckpt_dir, VARIABLES_DIR)
  present = {}
  if os.path.isdir(root):
    for dirpath, _, files in os.walk(root):
      for name in files:
        path = os.path.join(dirpath, name)
        present[os.path.relpath(path, root)] = path
  problems = [f"missing file {VARIABLES_DIR}/{rel}" for rel in sorted(set(recorded) - set(present))]
  problems += [f"unexpected file {VARIABLES_DIR}/{rel}"
               for rel in sorted(set(present) - set(recorded))]
  for rel in sorted(set(recorded) & set(present)):
    want, path = recorded[rel], present[rel]
    size = os.path.getsize(path)
    if size != want.get("bytes"):
      problems.append(f"{VARIABLES_DIR}/{rel} has {size} bytes, expected {want.get('bytes')} "
                      "(truncated or replaced)")
    elif outputs.sha256_file(path) != want.get("sha256"):
      problems.append(f"{VARIABLES_DIR}/{rel} does not match its sha256 (altered)")
  if problems:
    raise CheckpointError(f"{ckpt_dir} is damaged or incomplete; port or save it again:\n  "
                          + "\n  ".join(problems))
  return True


def load_tree(ckpt_dir: str, abstract: Any, metadata: Mapping[str, Any] | None = None) -> Any:
  """Restores the variables of `ckpt_dir` against `abstract` (a tree of ShapeDtypeStructs).

  Files are verified first (`verify_files`); missing, unexpected and mis-shaped arrays are all
  reported by name before failing.
  """
  import orbax.checkpoint as ocp

  ckpt_dir = os.path.abspath(ckpt_dir)
  metadata = read_metadata(ckpt_dir, ()) if metadata is None else metadata
  if not verify_files(ckpt_dir, metadata):
    warnings.warn(f"{ckpt_dir} was written before checkpoints carried file digests, so damage to "
                  "it cannot be detected; port it again (python -m port ... --force) to add them",
                  LegacyCheckpointWarning, stacklevel=2)
  path = os.path.join(ckpt_dir, VARIABLES_DIR)
  checkpointer = ocp.StandardCheckpointer()
  try:
    stored = checkpointer.metadata(path).item_metadata
    if stored is None:
      raise ValueError("no tree metadata")
    problems = compare_trees(flatten(abstract), flatten(dict(stored)))
    if problems:
      raise CheckpointError(f"{ckpt_dir} does not fit the expected tree:\n  "
                            + "\n  ".join(problems))
    return checkpointer.restore(path, abstract)
  except CheckpointError:
    raise
  except Exception as e:  # pylint: disable=broad-except  # Orbax/tensorstore raise many kinds.
    raise CheckpointError(f"cannot read the Orbax checkpoint in {path}: "
                          f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e
  finally:
    checkpointer.close()


def save(out_dir: str, model_name: str, model: nn.Module, variables: Any,
         extra_metadata: Mapping[str, Any] | None = None, force: bool = False) -> str:
  """Writes the VAE `model`'s `variables` with its name and config (see `save_tree`)."""
  problems = compare_trees(flatten(models.abstract_variables(model)), flatten(variables))
  if problems:
    raise CheckpointError("variables do not fit the model:\n  " + "\n  ".join(problems))
  return save_tree(out_dir, variables, {"kind": "vae", "model": model_name,
                                        "model_config": model_fields(model),
                                        **(extra_metadata or {})}, force)


def load(ckpt_dir: str, **overrides: Any) -> Loaded:
  """Restores a VAE checkpoint written by `save` against the abstract tree of its model.

  `overrides` replace model fields that do not change shapes (e.g. output_activation).
  """
  ckpt_dir = os.path.abspath(ckpt_dir)
  metadata = read_metadata(ckpt_dir)
  try:
    model = models.build(metadata["model"], **{**metadata["model_config"], **overrides})
  except (TypeError, ValueError) as e:
    raise CheckpointError(f"{ckpt_dir}/{METADATA_FILE}: cannot build its model: {e}") from e
  try:
    variables = load_tree(ckpt_dir, models.abstract_variables(model), metadata)
  except CheckpointError as e:
    raise CheckpointError(str(e).replace("the expected tree", f"model {metadata['model']!r}")) from e
  return Loaded(model, variables, metadata)
