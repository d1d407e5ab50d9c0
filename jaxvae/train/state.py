"""The training state (parameters, BatchNorm statistics, optimizer state, step, RNG) and its
conversion to and from the nested dictionaries that Orbax writes."""

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # int32 []: optimizer steps taken
  params: Any
  batch_stats: Any
  opt_state: Any
  key_data: jax.Array  # uint32: raw data of the run's typed PRNG key (jax.random.key(seed))

  @property
  def key(self) -> jax.Array:
    return jax.random.wrap_key_data(self.key_data)

  @property
  def variables(self) -> dict:
    return {"params": self.params, "batch_stats": self.batch_stats}


def create(variables: Any, tx: optax.GradientTransformation, seed: int) -> TrainState:
  """Step 0 from model `variables` ({"params", "batch_stats"}; batch_stats may be empty)."""
  params = variables["params"]
  return TrainState(step=jnp.zeros([], jnp.int32), params=params,
                    batch_stats=variables.get("batch_stats", {}), opt_state=tx.init(params),
                    key_data=jax.random.key_data(jax.random.key(seed)))


def _name(entry) -> str:
  for attr in ("key", "name", "idx"):
    if hasattr(entry, attr):
      return str(getattr(entry, attr))
  return str(entry)


def to_nested(tree: Any) -> dict:
  """Any pytree -> nested dicts of its leaves, keyed by path (dict keys, field names, indices)."""
  nested: dict = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    node = nested
    names = [_name(p) for p in path]
    for name in names[:-1]:
      node = node.setdefault(name, {})
    node[names[-1]] = leaf
  return nested


def from_nested(nested: dict, like: Any) -> Any:
  """Inverse of `to_nested`: the leaves of `nested` in the structure of `like`."""
  leaves = []
  paths, treedef = jax.tree_util.tree_flatten_with_path(like)
  for path, _ in paths:
    node = nested
    for p in path:
      node = node[_name(p)]
    leaves.append(node)
  return jax.tree.unflatten(treedef, leaves)
