"""Fast path of the PVAE: Winograd encoder, scatter-form upsample + conv (Keras 'same' padding)."""

import functools

import flax.linen as nn

from jaxvae.fast import kernels, products
from jaxvae.fast import base
from jaxvae.fast.base import Prepared
from jaxvae.models import layers

_leaky = functools.partial(kernels.leaky, slope=layers.KERAS_LEAKY_SLOPE)


def prepare(model: nn.Module, variables) -> Prepared:
  eps = layers.KERAS_BN_EPS
  p, s = variables["params"], variables["batch_stats"]
  blocks = model.bind({})
  enc = [(products.winograd_kernel(k), b)
         for k, b in (kernels.conv_bn(p, s, f"encoder_{i}", eps)
                      for i in range(len(blocks.encoder)))]
  dec = []
  for i in range(len(blocks.decoder)):
    k, b = kernels.conv_bn(p, s, f"decoder_{i}", eps)
    dec.append((kernels.phase_kernel(k, kernels.UP3_TAPS), b))
  out = p["decoder_out"]
  dec.append((kernels.phase_kernel(out["kernel"], kernels.UP3_TAPS), out["bias"]))
  dense = p["decoder_dense"]
  first = dec[0][0].shape[2]  # Channels of the map the Dense writes (Keras Reshape, h w c order).
  last = enc[-1][1].shape[0]
  return Prepared(
      encoder={"convs": enc, "heads": kernels.heads(p, "z_mean", "z_log_var", last, False)},
      decoder={"dense": (dense["kernel"], dense["bias"]),
               "ups": [(kernels.scatter_kernel(k), b) for k, b in dec]},
      dense_shape=kernels.square_map(dense["kernel"].shape[1], first))


def encoder_convs(model, params: Prepared, x):
  del model
  return base.winograd_encoder(params, x, _leaky)


def decode_dense(model, params: Prepared, z):
  del model
  return base.dense_maps(params, z, nn.relu)


def decode_ups(model, params: Prepared, x):
  del model
  ups = params.decoder["ups"]
  for k, b in ups[:-1]:
    x = _leaky(kernels.scatter_up(x, k, 1) + b)
  k, b = ups[-1]
  return kernels.scatter_up(x, k, 1) + b


def decode_out(model, y):
  if model.output_activation == "tanh":
    return kernels.tanh(y)
  return layers.output_activation(y, model.output_activation)
