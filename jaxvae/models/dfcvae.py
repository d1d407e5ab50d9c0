"""DFC-VAE of matthew-liu/beta-vae (`DFCVAE` in its models.py), ported to flax.linen."""

from typing import Sequence

import flax.linen as nn
import jax

from jaxvae.models import layers
from jaxvae.models.betavae import ConvBN


class DFCVAE(layers.VAE):
  """Encoder e1..e4 [Conv k4 s2 p1, BN, leaky 0.01] -> fc_mu/fc_var; decoder fc_z -> d1..d4 -> Sigmoid.

  Each decoder block: nearest 2x upsample -> ReplicationPad2d(1) -> Conv k3 -> BN -> leaky_relu(0.01).
  """
  latent_dim: int = 100
  input_range: Sequence[float] = (0.0, 1.0)
  output_range: Sequence[float] = (0.0, 1.0)

  def setup(self):
    self.e1, self.e2, self.e3, self.e4 = [ConvBN(c, 4, 2, 1) for c in (32, 64, 128, 256)]
    self.fc_mu = nn.Dense(self.latent_dim)
    self.fc_var = nn.Dense(self.latent_dim)
    self.fc_z = nn.Dense(4096)
    self.d1, self.d2, self.d3, self.d4 = [ConvBN(c, 3, 1, 0, upsample=True)
                                          for c in (128, 64, 32, 3)]

  def encode(self, x: jax.Array, train: bool = False) -> tuple[jax.Array, jax.Array]:
    """x: [B, 64, 64, 3] in input_range -> (mean, logvar), each [B, L]."""
    for block in (self.e1, self.e2, self.e3, self.e4):
      x = nn.leaky_relu(block(x, train), layers.TORCH_LEAKY_SLOPE)
    x = layers.flatten_nchw(x)  # [B, 4096]
    return self.fc_mu(x), self.fc_var(x)

  def decode(self, z: jax.Array, train: bool = False) -> jax.Array:
    """z: [B, L] -> [B, 64, 64, 3] in output_range."""
    x = layers.unflatten_nchw(self.fc_z(z), 256, 4, 4)
    for block in (self.d1, self.d2, self.d3, self.d4):  # upsample, edge pad, conv, BN
      x = nn.leaky_relu(block(x, train), layers.TORCH_LEAKY_SLOPE)
    return nn.sigmoid(x)
