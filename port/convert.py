"""Applies a conversion table to a torch state_dict and checks every key and shape by name."""

import collections
from typing import Any, Callable, NamedTuple, Sequence

import flax.linen as nn
import numpy as np

from jaxvae import checkpoint, models
from port import tables


class PortError(ValueError):
  """The source does not match the model: missing, unexpected or mis-shaped tensors."""


class Converted(NamedTuple):
  model: nn.Module
  variables: Any
  ignored: list[str]  # Source keys that the original carries but never uses.


def unflatten(flat: dict[str, np.ndarray]) -> dict:
  tree: dict = {}
  for path, value in flat.items():
    *parents, leaf = path.split("/")
    node = tree
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = value
  return tree


def latent_size(model_name: str, state_dict: dict[str, np.ndarray]) -> int:
  """The latent size most of the model's latent-sized tensors agree on.

  Read from every (key, axis) of the table's `latent_axes`, so that one mis-shaped tensor is
  outvoted and then reported by name as a shape mismatch, instead of its neighbours.
  """
  votes = [state_dict[key].shape[axis] for key, axis in tables.TORCH_MODELS[model_name].latent_axes
           if key in state_dict and state_dict[key].ndim > axis]
  if not votes:
    keys = ", ".join(k for k, _ in tables.TORCH_MODELS[model_name].latent_axes)
    raise PortError(f"cannot read the latent size: none of {keys} is present "
                    f"(is this a {model_name} checkpoint?)")
  return int(collections.Counter(votes).most_common(1)[0][0])


def apply_table(what: str, table: Sequence[tables.Entry], state_dict: dict[str, np.ndarray],
                expected: dict[str, Any], ignored: Callable[[str], bool] = lambda k: False
                ) -> tuple[dict, list[str]]:
  """(flax variables, ignored keys present) from `state_dict` through `table`.

  `expected` is the flat {path: ShapeDtypeStruct} of the flax variables; `ignored` names the
  source keys the original carries and the port does not need (BatchNorm's num_batches_tracked
  counters are never needed). Every missing key, unexpected key, shape mismatch, non-finite
  tensor and flax variable without an entry is reported by name in one PortError.
  """
  flat, skipped, problems = table_problems(table, state_dict, expected, ignored)
  if problems:
    raise PortError(f"the checkpoint does not match {what!r} ({len(problems)} problem(s)):\n  "
                    + "\n  ".join(problems))
  return unflatten(flat), skipped


def table_problems(table: Sequence[tables.Entry], state_dict: dict[str, np.ndarray],
                   expected: dict[str, Any], ignored: Callable[[str], bool] = lambda k: False
                   ) -> tuple[dict, list[str], list[str]]:
  """(flat {flax path: array}, ignored keys present, problems by name): apply_table's work
  without raising, for ports that gather the problems of several tables into one error."""
  problems, flat = [], {}
  for entry in table:
    if entry.torch_key not in state_dict:
      problems.append(f"missing: {entry.torch_key} (for {entry.flax_path})")
      continue
    value = np.asarray(entry.transform(state_dict[entry.torch_key]), np.float32)
    if not np.isfinite(value).all():
      problems.append(f"non-finite values: {entry.torch_key} "
                      f"({int(value.size - np.isfinite(value).sum())} NaN or infinite)")
    want = tuple(expected[entry.flax_path].shape)
    if value.shape != want:
      problems.append(f"shape mismatch: {entry.torch_key} {tuple(state_dict[entry.torch_key].shape)} "
                      f"-> {entry.flax_path} {value.shape}, expected {want}")
    flat[entry.flax_path] = value
  used = {e.torch_key for e in table}
  skipped = sorted(k for k in state_dict if k not in used and ignored(k))
  problems += [f"unexpected: {k} {tuple(np.shape(state_dict[k]))}" for k in sorted(state_dict)
               if k not in used and k not in skipped and not k.endswith(".num_batches_tracked")]
  problems += [f"no table entry for flax variable {p}"
               for p in sorted(set(expected) - {e.flax_path for e in table})]
  return flat, skipped, problems


def convert(model_name: str, state_dict: dict[str, np.ndarray], **model_fields) -> Converted:
  """Builds the flax variables for `model_name` from `state_dict` through its table."""
  if model_name not in tables.TORCH_MODELS:
    raise PortError(f"no torch conversion table for {model_name!r}; "
                    f"torch models: {', '.join(tables.TORCH_MODELS)}")
  spec = tables.TORCH_MODELS[model_name]
  model = models.build(model_name, latent_dim=latent_size(model_name, state_dict), **model_fields)
  variables, ignored = apply_table(
      model_name, spec.table, state_dict, checkpoint.flatten(models.abstract_variables(model)),
      lambda k: k.startswith(spec.ignored_prefixes))
  return Converted(model, variables, ignored)
