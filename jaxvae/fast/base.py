"""The folded weights a fast-path recipe prepares, and what a recipe module provides.

A recipe (jaxvae/fast/<model>.py, named by the model's registry entry) is a module with
  prepare(model, variables) -> Prepared        BatchNorm folded, kernels rewritten; once per checkpoint
  encoder_convs(model, params, x) -> [B, F]    the encoder's convolutions and activations, flattened
  decode_dense(model, params, z) -> maps       the first dense layer(s) up to the convolutions
  decode_ups(model, params, maps) -> [N, H, W, C]  the convolutions, before the last nonlinearity
  decode_out(model, y) -> images                the last nonlinearity, in the model's output range
and jaxvae.fast runs them: convolutions chunked, dense layers and heads once per batch. The steps
several recipes share are below.
"""

from typing import Any, Callable

import flax.struct

from jaxvae.fast import products


@flax.struct.dataclass
class Prepared:
  """Folded weights of one model (a pytree of arrays): what the fast encode/decode run on."""
  encoder: Any  # {"convs": [...], "heads": (kernel [F, 2L], bias [2L])}
  decoder: Any  # {"dense": (kernel, bias), "ups": [...]}
  dense_shape: tuple = flax.struct.field(pytree_node=False, default=())  # maps after "dense"


def winograd_encoder(params: Prepared, x, act: Callable):
  """Encoders whose convs are all stride-2 k4 p1 (Winograd form), each followed by `act`:
  [B, 64, 64, 3] -> the flattened features the heads read, [B, F]."""
  for kernel, bias in params.encoder["convs"]:
    x = act(products.winograd_conv(x, kernel) + bias)
  return x.reshape(x.shape[0], -1)


def dense_maps(params: Prepared, z, act: Callable):
  """The decoder's dense layer and `act`, as the maps the convolutions take: [N, *dense_shape]."""
  kernel, bias = params.decoder["dense"]
  return act(z @ kernel + bias).reshape(-1, *params.dense_shape)
