"""Explicit conversion tables, one per torch model: flax path <- torch key + transform."""

from typing import Callable, NamedTuple

import numpy as np

from port import transforms


class Entry(NamedTuple):
  flax_path: str  # "params/fc_mu/kernel"
  torch_key: str  # "fc_mu.weight"
  transform: Callable[[np.ndarray], np.ndarray]


def _conv(flax_module: str, torch_module: str, transform=transforms.conv) -> list[Entry]:
  return [Entry(f"params/{flax_module}/kernel", f"{torch_module}.weight", transform),
          Entry(f"params/{flax_module}/bias", f"{torch_module}.bias", transforms.identity)]


def _linear(flax_module: str, torch_module: str) -> list[Entry]:
  return _conv(flax_module, torch_module, transforms.linear)


def _batch_norm(flax_module: str, torch_module: str) -> list[Entry]:
  return [Entry(f"params/{flax_module}/scale", f"{torch_module}.weight", transforms.identity),
          Entry(f"params/{flax_module}/bias", f"{torch_module}.bias", transforms.identity),
          Entry(f"batch_stats/{flax_module}/mean", f"{torch_module}.running_mean", transforms.identity),
          Entry(f"batch_stats/{flax_module}/var", f"{torch_module}.running_var", transforms.identity)]


def _conv_bn(flax_block: str, torch_conv: str, torch_bn: str,
             conv_transform=transforms.conv) -> list[Entry]:
  return (_conv(f"{flax_block}/conv", torch_conv, conv_transform)
          + _batch_norm(f"{flax_block}/bn", torch_bn))


VANILLA = [
    *[e for i in range(4) for e in _conv(f"encoder_{i}", f"encoder.{2 * i}")],
    *_linear("fc_mu", "fc_mu"),
    *_linear("fc_logvar", "fc_logvar"),
    *_linear("decoder_input", "decoder_input"),
    *[e for i in range(4)
      for e in _conv(f"decoder_{i}", f"decoder.{2 * i}", transforms.conv_transpose)],
]

BETAVAE = [
    *[e for i in range(4) for e in _conv_bn(f"encoder_{i}", f"encoder.{i}.0", f"encoder.{i}.1")],
    *_linear("fc_mu", "fc_mu"),
    *_linear("fc_var", "fc_var"),
    *_linear("fc_z", "fc_z"),
    *[e for i in range(4) for e in _conv_bn(f"decoder_{i}", f"decoder.{i}.0", f"decoder.{i}.1",
                                            transforms.conv_transpose)],
]

DFCVAE = [
    *[e for i in range(1, 5) for e in _conv_bn(f"e{i}", f"e{i}.0", f"e{i}.1")],
    *_linear("fc_mu", "fc_mu"),
    *_linear("fc_var", "fc_var"),
    *_linear("fc_z", "fc_z"),
    *[e for i in range(1, 5) for e in _conv_bn(f"d{i}", f"d{i}.1", f"d{i}.2")],
]


def _latent_axes(mu: str, var: str, dec: str) -> tuple[tuple[str, int], ...]:
  """The heads' weights and biases (axis 0) and the decoder Linear's weight (axis 1)."""
  return ((f"{mu}.weight", 0), (f"{mu}.bias", 0), (f"{var}.weight", 0), (f"{var}.bias", 0),
          (f"{dec}.weight", 1))


class TorchModel(NamedTuple):
  table: list[Entry]
  latent_axes: tuple[tuple[str, int], ...]  # (key, axis) of tensors whose size is the latent.
  ignored_prefixes: tuple[str, ...]  # State-dict entries that the original carries but never uses.
  reference: str  # Class name in port.torch_ref.


TORCH_MODELS = {
    "vanilla": TorchModel(VANILLA, _latent_axes("fc_mu", "fc_logvar", "decoder_input"), (), "VAE"),
    "betavae": TorchModel(BETAVAE, _latent_axes("fc_mu", "fc_var", "fc_z"), (), "BetaVAE"),
    # DFCVAE calls BetaVAE.__init__, which leaves the unused encoder.* / decoder.* modules behind.
    "dfcvae": TorchModel(DFCVAE, _latent_axes("fc_mu", "fc_var", "fc_z"), ("encoder.", "decoder."),
                         "DFCVAE"),
}
