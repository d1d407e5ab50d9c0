"""Fast path of the Beta-VAE: folded BatchNorm, dense1, scatter-form transposed convs."""

import flax.linen as nn

from jaxvae.fast import kernels
from jaxvae.fast import base
from jaxvae.fast.base import Prepared
from jaxvae.models import layers


def prepare(model: nn.Module, variables) -> Prepared:
  eps = layers.TORCH_BN_EPS
  p, s = variables["params"], variables["batch_stats"]
  blocks = model.bind({})
  enc = [kernels.conv_bn(p, s, f"encoder_{i}", eps) for i in range(len(blocks.encoder))]
  dec = []
  for i in range(len(blocks.decoder)):
    d = p[f"decoder_{i}"]
    k, b = kernels.fold_bn(kernels.convt_kernel(d["conv"]["kernel"]), d["conv"]["bias"], d["bn"],
                           s[f"decoder_{i}"]["bn"], eps)
    dec.append((kernels.phase_kernel(k, kernels.CONVT4_TAPS), b))
  k0, b0 = dec[0]
  kernel, bias, shape = kernels.dense1(p["fc_z"]["kernel"], p["fc_z"]["bias"],
                                       lambda x: kernels.phase_up(x, k0, "constant", 0), b0,
                                       k0.shape[2], nchw=True)
  last = enc[-1][1].shape[0]
  return Prepared(encoder={"convs": enc, "heads": kernels.heads(p, "fc_mu", "fc_var", last, True)},
                  decoder={"dense": (kernel, bias),
                           "ups": [(kernels.scatter_kernel(k), b) for k, b in dec[1:]]},
                  dense_shape=shape)


def encoder_convs(model, params: Prepared, x):
  del model
  for kernel, bias in params.encoder["convs"]:  # Unpadded stride-2 convs.
    x = nn.relu(kernels.conv(x, kernel, 2) + bias)
  return x.reshape(x.shape[0], -1)


def decode_dense(model, params: Prepared, z):
  del model
  return base.dense_maps(params, z, nn.relu)


def decode_ups(model, params: Prepared, x):
  ups = params.decoder["ups"]
  extras = [block.output_padding for block in model.bind({}).decoder[1:]]
  for (k, b), extra in zip(ups[:-1], extras):
    x = nn.relu(kernels.scatter_up(x, k, 0, extra) + b)
  k, b = ups[-1]
  return kernels.scatter_up(x, k, 0, extras[-1]) + b


def decode_out(model, y):
  del model
  return nn.sigmoid(nn.relu(y))  # BN -> ReLU -> Sigmoid, as the original.
