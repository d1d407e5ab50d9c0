"""Beta-VAE of matthew-liu/beta-vae (`BetaVAE` in its models.py), ported to flax.linen."""

from typing import Sequence

import flax.linen as nn
import jax

from jaxvae.models import layers


class ConvBN(nn.Module):
  """torch Sequential(Conv2d or ConvTranspose2d, BatchNorm2d); the activation is the caller's.

  `upsample`: the DFC-VAE's F.interpolate(x, 2) then Sequential(ReplicationPad2d(1), Conv2d, BN).
  """
  features: int
  kernel: int
  stride: int
  pad: int
  transpose: bool = False
  output_padding: int = 0
  bn_eps: float = layers.TORCH_BN_EPS
  upsample: bool = False  # x is first upsampled 2x (nearest) and edge-padded by 1 (DFC-VAE)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    # Training runs the exact phase forms of the 2x up-sampling layers (faster gradients).
    if self.transpose:
      x = layers.torch_conv_transpose(self.features, self.kernel, self.stride, self.pad,
                                      self.output_padding, name="conv")(x, train=train)
    elif self.upsample:
      x = layers.UpsampleConv(self.features, (self.kernel, self.kernel),
                              padding=((self.pad, self.pad),) * 2, edge=True,
                              name="conv")(x, train=train)
    else:
      x = layers.torch_conv(self.features, self.kernel, self.stride, self.pad,
                            name="conv")(x, train=train)
    return layers.batch_norm(train, self.bn_eps, layers.TORCH_BN_MOMENTUM, "bn",
                             unbiased_update=True)(x)


class BetaVAE(layers.VAE):
  """Encoder 4 x [Conv k4 s2 p0, BN, ReLU] -> fc_mu/fc_var; decoder fc_z -> 4 x [ConvT, BN, ReLU] -> Sigmoid.

  Quirk kept from the original: the last block is BN -> ReLU -> Sigmoid, so every output is >= 0.5.
  """
  latent_dim: int = 32
  input_range: Sequence[float] = (0.0, 1.0)
  output_range: Sequence[float] = (0.0, 1.0)

  def setup(self):
    self.encoder = [ConvBN(c, 4, 2, 0) for c in (32, 32, 64, 64)]
    self.fc_mu = nn.Dense(self.latent_dim)
    self.fc_var = nn.Dense(self.latent_dim)
    self.fc_z = nn.Dense(256)
    self.decoder = [ConvBN(c, 4, 2, 0, transpose=True, output_padding=op)
                    for c, op in ((64, 0), (32, 0), (32, 1), (3, 0))]

  def encode(self, x: jax.Array, train: bool = False) -> tuple[jax.Array, jax.Array]:
    """x: [B, 64, 64, 3] in input_range -> (mean, logvar), each [B, L]."""
    for block in self.encoder:
      x = nn.relu(block(x, train))
    x = layers.flatten_nchw(x)  # [B, 256]
    return self.fc_mu(x), self.fc_var(x)

  def decode(self, z: jax.Array, train: bool = False) -> jax.Array:
    """z: [B, L] -> [B, 64, 64, 3] in output_range."""
    x = layers.unflatten_nchw(self.fc_z(z), 64, 2, 2)
    for block in self.decoder:
      x = nn.relu(block(x, train))
    return nn.sigmoid(x)
