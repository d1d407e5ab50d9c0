"""Orbax checkpoints of ported models: atomic save, and restore against an abstract tree by name."""

import json
import os
import shutil
import tempfile
from typing import Any, Mapping, NamedTuple

import flax.linen as nn
import jax
import numpy as np

from jaxvae import models, outputs

METADATA_FILE = "jaxvae.json"
VARIABLES_DIR = "variables"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
  """A checkpoint is missing, malformed, or does not fit its model."""


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


def model_fields(model: nn.Module) -> dict[str, Any]:
  """The dataclass fields that rebuild `model` through `models.build`, as JSON-friendly values."""
  fields = {}
  for name in model.__dataclass_fields__:
    if name in ("parent", "name"):
      continue
    value = getattr(model, name)
    fields[name] = list(value) if isinstance(value, tuple) else value
  return fields


def save(out_dir: str, model_name: str, model: nn.Module, variables: Any,
         extra_metadata: Mapping[str, Any] | None = None, force: bool = False) -> str:
  """Writes `out_dir/variables` (Orbax StandardCheckpointer) and `out_dir/jaxvae.json` atomically.

  Everything is written into a temporary sibling folder that replaces `out_dir` only when
  complete. An existing `out_dir` is refused unless `force`.
  """
  import orbax.checkpoint as ocp  # Imported lazily: orbax is slow to import.

  out_dir = os.path.abspath(out_dir)
  if os.path.exists(out_dir) and not force:
    raise FileExistsError(f"{out_dir} already exists; pass --force to overwrite it")
  problems = compare_trees(flatten(models.abstract_variables(model)), flatten(variables))
  if problems:
    raise CheckpointError("variables do not fit the model:\n  " + "\n  ".join(problems))
  parent = os.path.dirname(out_dir)
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.tmp-", dir=parent)
  os.chmod(tmp, outputs.default_file_mode(0o777))
  try:
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(os.path.join(tmp, VARIABLES_DIR),
                      jax.tree.map(lambda a: np.asarray(a, np.float32), variables))
    checkpointer.wait_until_finished()
    checkpointer.close()
    metadata = {"format_version": FORMAT_VERSION, "model": model_name,
                "model_config": model_fields(model), **(extra_metadata or {})}
    with open(os.path.join(tmp, METADATA_FILE), "w") as f:
      json.dump(metadata, f, indent=2)
    if os.path.exists(out_dir):
      old = tmp + ".old"
      os.rename(out_dir, old)
      os.rename(tmp, out_dir)
      shutil.rmtree(old)
    else:
      os.rename(tmp, out_dir)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return out_dir


def read_metadata(ckpt_dir: str) -> dict:
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
  missing = [k for k in ("model", "model_config") if k not in metadata]
  if missing:
    raise CheckpointError(f"{path} is malformed: no {', '.join(missing)}")
  return metadata


def load(ckpt_dir: str, **overrides: Any) -> Loaded:
  """Restores a checkpoint written by `save` against the abstract tree of its model.

  `overrides` replace model fields that do not change shapes (e.g. output_activation).
  Missing, unexpected and mis-shaped arrays are all reported by name before failing.
  """
  import orbax.checkpoint as ocp

  ckpt_dir = os.path.abspath(ckpt_dir)
  metadata = read_metadata(ckpt_dir)
  model = models.build(metadata["model"], **{**metadata["model_config"], **overrides})
  abstract = models.abstract_variables(model)
  path = os.path.join(ckpt_dir, VARIABLES_DIR)
  checkpointer = ocp.StandardCheckpointer()
  try:
    stored = checkpointer.metadata(path).item_metadata
  except (FileNotFoundError, ValueError) as e:
    raise CheckpointError(f"cannot read the Orbax checkpoint in {path}: {e}") from e
  problems = compare_trees(flatten(abstract), flatten(dict(stored)))
  if problems:
    raise CheckpointError(f"{ckpt_dir} does not fit model {metadata['model']!r}:\n  "
                          + "\n  ".join(problems))
  variables = checkpointer.restore(path, abstract)
  checkpointer.close()
  return Loaded(model, variables, metadata)
