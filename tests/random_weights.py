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


def random_inception(seed: int = 0):
  """torch FID Inception-v3 (port.torch_ref): He-normal convolutions, random BatchNorm, so that
  its features are far from trivial."""
  import torch  # pylint: disable=import-outside-toplevel
  from port.torch_ref import inception  # pylint: disable=import-outside-toplevel
  torch.manual_seed(seed)
  module = inception.FIDInceptionV3()
  with torch.no_grad():
    for m in module.modules():
      if isinstance(m, torch.nn.Conv2d):
        torch.nn.init.kaiming_normal_(m.weight)
  return randomize_torch(module, seed)
