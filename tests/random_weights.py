"""Random weights with non-trivial BatchNorm statistics, so that parity checks cover every tensor."""

import jax
import numpy as np


def randomize_torch(module, seed: int = 0):
  """A torch module with random biases, BatchNorm scales and running statistics, in eval mode."""
  import torch  # pylint: disable=import-outside-toplevel
  torch.manual_seed(seed)
  with torch.no_grad():
    for name, t in module.state_dict().items():
      if name.endswith("running_mean") or name.endswith(".bias"):
        t.copy_(0.1 * torch.randn_like(t))
      elif name.endswith("running_var"):
        t.copy_(0.5 + torch.rand_like(t))
      elif t.ndim == 1 and name.endswith(".weight"):  # BatchNorm scale
        t.copy_(0.5 + torch.rand_like(t))
  return module.eval()


def randomize_flax(variables, seed: int = 0):
  """Flax variables with random biases, BatchNorm scales, means and variances (kernels kept)."""
  rng = np.random.default_rng(seed)

  def leaf(path, a):
    name = "/".join(str(getattr(k, "key", k)) for k in path)
    a = np.asarray(a)
    if name.startswith("batch_stats") and name.endswith("var"):
      return 0.5 + rng.random(a.shape, dtype=np.float32)
    if name.endswith("mean") or name.endswith("bias"):
      return 0.1 * rng.standard_normal(a.shape, dtype=np.float32)
    if name.endswith("scale"):
      return 0.5 + rng.random(a.shape, dtype=np.float32)
    return a
  return jax.tree_util.tree_map_with_path(leaf, variables)
