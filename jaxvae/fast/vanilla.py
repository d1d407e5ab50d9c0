"""Fast path of the Vanilla VAE: Winograd encoder, dense1, Karatsuba decoder on tile-planar maps."""

import flax.linen as nn

from jaxvae.fast import kernels, products
from jaxvae.fast import base
from jaxvae.fast.base import Prepared
from jaxvae.models import layers


def _tile_planar(a, h: int, w: int, c: int):
  """Columns (h, w, c) of an h x w x c map -> (h % 2, w % 2, h / 2, w / 2, c)."""
  k = a.ndim - 1
  return a.reshape(*a.shape[:-1], h // 2, 2, w // 2, 2, c).transpose(
      *range(k), k + 1, k + 3, k, k + 2, k + 4).reshape(a.shape)


def prepare(model: nn.Module, variables) -> Prepared:
  p = variables["params"]
  blocks = model.bind({})
  n_enc, n_dec = len(blocks.encoder), len(blocks.decoder)
  enc = [(products.winograd_kernel(p[f"encoder_{i}"]["kernel"]), p[f"encoder_{i}"]["bias"])
         for i in range(n_enc)]
  dec = [(kernels.convt_kernel(p[f"decoder_{i}"]["kernel"]), p[f"decoder_{i}"]["bias"])
         for i in range(n_dec)]
  k0, b0 = dec[0]
  phase0 = kernels.phase_kernel(k0, kernels.CONVT4_TAPS)
  kernel, bias, shape = kernels.dense1(
      p["decoder_input"]["kernel"], p["decoder_input"]["bias"],
      lambda x: kernels.phase_up(x, phase0, "constant", 1), b0, k0.shape[2], nchw=True)
  last = enc[-1][1].shape[0]
  return Prepared(
      encoder={"convs": enc, "heads": kernels.heads(p, "fc_mu", "fc_logvar", last, nchw=True)},
      decoder={"dense": (_tile_planar(kernel, *shape), _tile_planar(bias, *shape)),
               "ups": [(tuple(products.pad_columns(products.karatsuba_kernel(k))), b)
                       for k, b in dec[1:]]},
      dense_shape=shape)


def encoder_convs(model, params: Prepared, x):
  del model
  return base.winograd_encoder(params, x, nn.relu)


def decode_dense(model, params: Prepared, z):
  """z [N, L] -> tile-planar [N, 2, 2, h/2, w/2, c] BEFORE its bias and ReLU: those run in the
  chunk loop, fused into the first layer's input transform (1.2x faster than fused into the dot
  here)."""
  del model
  h, w, c = params.dense_shape
  return (z @ params.decoder["dense"][0]).reshape(-1, 2, 2, h // 2, w // 2, c)


def decode_ups(model, params: Prepared, x):
  del model
  h, w, c = params.dense_shape
  ups = params.decoder["ups"]
  x = nn.relu(x + params.decoder["dense"][1].reshape(2, 2, h // 2, w // 2, c))
  x = [[x[:, 0, 0], x[:, 0, 1]], [x[:, 1, 0], x[:, 1, 1]]]
  for i, (k, b) in enumerate(ups):
    x = products.karatsuba_up(x, k, b, nn.relu if i < len(ups) - 1 else lambda y: y)
  return kernels.interleave(x)  # Tile-planar -> pixels.


def decode_out(model, y):
  if model.output_activation == "tanh":
    return kernels.tanh(y)
  return layers.output_activation(y, model.output_activation)
