"""Building blocks of the torch conversion tables: one Entry per flax variable."""

from typing import Callable, NamedTuple

import numpy as np

from port import transforms


class Entry(NamedTuple):
  flax_path: str  # "params/fc_mu/kernel"
  torch_key: str  # "fc_mu.weight"
  transform: Callable[[np.ndarray], np.ndarray]


def conv(flax_module: str, torch_module: str, transform=transforms.conv,
         bias: bool = True) -> list[Entry]:
  """torch Conv2d / ConvTranspose2d / Linear `torch_module` -> the flax module's kernel (and bias)."""
  kernel = [Entry(f"params/{flax_module}/kernel", f"{torch_module}.weight", transform)]
  if not bias:
    return kernel
  return kernel + [Entry(f"params/{flax_module}/bias", f"{torch_module}.bias", transforms.identity)]


def linear(flax_module: str, torch_module: str) -> list[Entry]:
  return conv(flax_module, torch_module, transforms.linear)


def batch_norm(flax_module: str, torch_module: str) -> list[Entry]:
  return [Entry(f"params/{flax_module}/scale", f"{torch_module}.weight", transforms.identity),
          Entry(f"params/{flax_module}/bias", f"{torch_module}.bias", transforms.identity),
          Entry(f"batch_stats/{flax_module}/mean", f"{torch_module}.running_mean", transforms.identity),
          Entry(f"batch_stats/{flax_module}/var", f"{torch_module}.running_var", transforms.identity)]


def conv_bn(flax_block: str, torch_conv: str, torch_bn: str,
             conv_transform=transforms.conv) -> list[Entry]:
  return (conv(f"{flax_block}/conv", torch_conv, conv_transform)
          + batch_norm(f"{flax_block}/bn", torch_bn))


def latent_axes(mu: str, var: str, dec: str) -> tuple[tuple[str, int], ...]:
  """The heads' weights and biases (axis 0) and the decoder Linear's weight (axis 1)."""
  return ((f"{mu}.weight", 0), (f"{mu}.bias", 0), (f"{var}.weight", 0), (f"{var}.bias", 0),
          (f"{dec}.weight", 1))


class TorchModel(NamedTuple):
  table: list[Entry]
  latent_axes: tuple[tuple[str, int], ...]  # (key, axis) of tensors whose size is the latent.
  ignored_prefixes: tuple[str, ...]  # State-dict entries that the original carries but never uses.
  reference: str  # Class name in port.torch_ref.
