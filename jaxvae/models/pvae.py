"""PVAE, the Keras "plain VAE" of the Kaggle notebook by arnrob, ported to flax.linen."""

from typing import Sequence

import flax.linen as nn
import jax

from jaxvae.models import layers


class ConvBNLeaky(nn.Module):
  """Keras [Conv2D(padding='same'), BatchNormalization(eps 1e-3), LeakyReLU(0.3)]."""
  features: int
  kernel: int
  stride: int
  upsample: bool = False  # UpSampling2D(2) first (decoder blocks)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    # 'same' for these sizes pads the same amount on both sides: k4 s2 -> 1, k3 s1 -> 1.
    if self.upsample:  # Training runs the exact phase form (faster gradients).
      x = layers.UpsampleConv(self.features, (self.kernel, self.kernel),
                              padding=((1, 1), (1, 1)), name="conv")(x, train=train)
    else:
      x = layers.Conv(self.features, (self.kernel, self.kernel),
                      strides=(self.stride, self.stride), padding=((1, 1), (1, 1)),
                      name="conv")(x, train=train)
    x = layers.batch_norm(train, layers.KERAS_BN_EPS, layers.KERAS_BN_MOMENTUM, "bn")(x)
    return nn.leaky_relu(x, layers.KERAS_LEAKY_SLOPE)


class PVAE(layers.VAE):
  """Encoder 4 x [Conv k4 s2 same, BN, LeakyReLU(0.3)] -> Dense mean/logvar (Flatten in h,w,c order).

  Decoder Dense(4096, relu) -> (4,4,256) -> 3 x [Up2x, Conv k3, BN, LeakyReLU] -> Up2x -> Conv(3).
  The original's last conv is linear with outputs on the 0-255 scale (output_activation="linear",
  output_range (0, 255)); output_activation="sigmoid" gives the report's [0, 1] variant.
  """
  latent_dim: int = 100
  input_range: Sequence[float] = (0.0, 1.0)
  output_range: Sequence[float] = (0.0, 255.0)
  output_activation: str = "linear"

  def setup(self):
    self.encoder = [ConvBNLeaky(c, 4, 2) for c in (32, 64, 128, 256)]
    self.z_mean = nn.Dense(self.latent_dim)
    self.z_log_var = nn.Dense(self.latent_dim)
    self.decoder_dense = nn.Dense(4096)
    self.decoder = [ConvBNLeaky(c, 3, 1, upsample=True) for c in (128, 64, 32)]
    self.decoder_out = layers.UpsampleConv(3, (3, 3), padding=((1, 1), (1, 1)))

  def encode(self, x: jax.Array, train: bool = False) -> tuple[jax.Array, jax.Array]:
    """x: [B, 64, 64, 3] in input_range -> (mean, logvar), each [B, L]."""
    for block in self.encoder:
      x = block(x, train)
    x = x.reshape(x.shape[0], -1)  # Keras Flatten: (h, w, c) order.
    return self.z_mean(x), self.z_log_var(x)

  def decode(self, z: jax.Array, train: bool = False) -> jax.Array:
    """z: [B, L] -> [B, 64, 64, 3] in output_range."""
    x = nn.relu(self.decoder_dense(z)).reshape(z.shape[0], 4, 4, 256)
    for block in self.decoder:  # UpSampling2D, Conv2D, BN, LeakyReLU
      x = block(x, train)
    return layers.output_activation(self.decoder_out(x, train=train), self.output_activation)
