"""Vanilla VAE of Hussam Alafandi (hussamalafandi/VAE-CelebA, class `VAE`), ported to flax.linen."""

from typing import Sequence

import flax.linen as nn
import jax

from jaxvae.models import layers


class VanillaVAE(layers.VAE):
  """Encoder 4 x [Conv k4 s2 p1, ReLU] -> fc_mu/fc_logvar; decoder_input -> 4 x ConvT k4 s2 p1 -> Tanh.

  `output_activation="sigmoid"` with input_range (0, 1) reproduces the evaluation report's
  mismatched setup (a compatibility option, not the original).
  """
  latent_dim: int = 200
  input_range: Sequence[float] = (-1.0, 1.0)
  output_range: Sequence[float] = (-1.0, 1.0)
  output_activation: str = "tanh"

  def setup(self):
    self.encoder = [layers.torch_conv(c, 4, 2, 1) for c in (32, 64, 128, 256)]
    self.fc_mu = nn.Dense(self.latent_dim)
    self.fc_logvar = nn.Dense(self.latent_dim)
    self.decoder_input = nn.Dense(4096)
    self.decoder = [layers.torch_conv_transpose(c, 4, 2, 1, 0) for c in (128, 64, 32, 3)]

  def encode(self, x: jax.Array, train: bool = False) -> tuple[jax.Array, jax.Array]:
    """x: [B, 64, 64, 3] in input_range -> (mean, logvar), each [B, L]."""
    for conv in self.encoder:
      x = nn.relu(conv(x, train=train))
    x = layers.flatten_nchw(x)  # [B, 4096]
    return self.fc_mu(x), self.fc_logvar(x)

  def decode(self, z: jax.Array, train: bool = False) -> jax.Array:
    """z: [B, L] -> [B, 64, 64, 3] in output_range."""
    x = layers.unflatten_nchw(self.decoder_input(z), 256, 4, 4)
    for i, conv in enumerate(self.decoder):
      x = conv(x, train=train)  # Training: the exact phase form (faster gradients on CPU).
      if i < len(self.decoder) - 1:
        x = nn.relu(x)
    return layers.output_activation(x, self.output_activation)
