"""Fast path of the DFC-VAE: Winograd encoder, dense1, window-form upsample + edge pad + conv."""

import functools

import flax.linen as nn

from jaxvae.fast import kernels, products
from jaxvae.fast import base
from jaxvae.fast.base import Prepared
from jaxvae.models import layers

_leaky = functools.partial(kernels.leaky, slope=layers.TORCH_LEAKY_SLOPE)
_ENCODER = ("e1", "e2", "e3", "e4")
_DECODER = ("d1", "d2", "d3", "d4")


def prepare(model: nn.Module, variables) -> Prepared:
  del model
  eps = layers.TORCH_BN_EPS
  p, s = variables["params"], variables["batch_stats"]
  enc = [(products.winograd_kernel(k), b)
         for k, b in (kernels.conv_bn(p, s, name, eps) for name in _ENCODER)]
  dec = []
  for name in _DECODER:
    k, b = kernels.conv_bn(p, s, name, eps)
    dec.append((kernels.phase_kernel(k, kernels.UP3_TAPS), b))
  k0, b0 = dec[0]
  kernel, bias, shape = kernels.dense1(p["fc_z"]["kernel"], p["fc_z"]["bias"],
                                       lambda x: kernels.phase_up(x, k0, "edge", 1), b0,
                                       k0.shape[2], nchw=True)
  last = enc[-1][1].shape[0]
  return Prepared(encoder={"convs": enc, "heads": kernels.heads(p, "fc_mu", "fc_var", last, True)},
                  decoder={"dense": (kernel, bias), "ups": dec[1:]}, dense_shape=shape)


def encoder_convs(model, params: Prepared, x):
  del model
  return base.winograd_encoder(params, x, _leaky)


def decode_dense(model, params: Prepared, z):
  del model
  return base.dense_maps(params, z, _leaky)


def decode_ups(model, params: Prepared, x):
  del model
  ups = params.decoder["ups"]
  for k, b in ups[:-1]:
    x = _leaky(kernels.phase_up(x, k, "edge", 1) + b)
  k, b = ups[-1]
  return kernels.phase_up(x, k, "edge", 1) + b


def decode_out(model, y):
  del model
  return nn.sigmoid(_leaky(y))
