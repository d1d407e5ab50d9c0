"""Torch- and Keras-compatible building blocks in NHWC flax.linen, with explicit padding."""

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

# Normalization epsilons and activation slopes of the original frameworks.
TORCH_BN_EPS = 1e-5
KERAS_BN_EPS = 1e-3
TORCH_LEAKY_SLOPE = 0.01
KERAS_LEAKY_SLOPE = 0.3


class VAEOutput(NamedTuple):
  recon: jax.Array  # [B, H, W, C] in the model's output range
  mean: jax.Array  # [B, L]
  logvar: jax.Array  # [B, L]
  z: jax.Array  # [B, L]


def torch_conv(features: int, kernel: int, stride: int, pad: int,
               name: str | None = None) -> nn.Conv:
  """torch.nn.Conv2d(k, stride, padding=pad) as an NHWC flax conv."""
  return nn.Conv(features, (kernel, kernel), strides=(stride, stride),
                 padding=((pad, pad), (pad, pad)), name=name)


def torch_conv_transpose(features: int, kernel: int, stride: int, pad: int,
                         output_padding: int, name: str | None = None) -> nn.ConvTranspose:
  """torch.nn.ConvTranspose2d(k, stride, padding, output_padding) as a flax ConvTranspose.

  Out size = (in - 1) * stride - 2 * pad + kernel + output_padding, exactly as torch.
  """
  lo, hi = kernel - 1 - pad, kernel - 1 - pad + output_padding
  return nn.ConvTranspose(features, (kernel, kernel), strides=(stride, stride),
                          padding=((lo, hi), (lo, hi)), transpose_kernel=True, name=name)


def batch_norm(train: bool, eps: float, momentum: float, name: str) -> nn.BatchNorm:
  """BatchNorm with the original framework's eps; flax momentum = 1 - torch momentum."""
  return nn.BatchNorm(use_running_average=not train, epsilon=eps, momentum=momentum, name=name)


def flatten_nchw(x: jax.Array) -> jax.Array:
  """[B, H, W, C] -> [B, C*H*W] in torch's C-major order."""
  return jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)


def unflatten_nchw(x: jax.Array, c: int, h: int, w: int) -> jax.Array:
  """[B, C*H*W] in torch's order -> [B, H, W, C]."""
  return jnp.transpose(x.reshape(x.shape[0], c, h, w), (0, 2, 3, 1))


def upsample_nearest2x(x: jax.Array) -> jax.Array:
  """F.interpolate(scale_factor=2) / Keras UpSampling2D(2): repeat rows and columns."""
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def edge_pad1(x: jax.Array) -> jax.Array:
  """torch.nn.ReplicationPad2d(1) on NHWC."""
  return jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")


def reparameterize(mean: jax.Array, logvar: jax.Array, eps: jax.Array | None) -> jax.Array:
  """z = mean + exp(logvar / 2) * eps; z = mean when eps is None."""
  if eps is None:
    return mean
  return mean + jnp.exp(0.5 * logvar) * eps


OUTPUT_ACTIVATIONS = {"linear": lambda x: x, "sigmoid": nn.sigmoid, "tanh": nn.tanh}


def output_activation(x: jax.Array, name: str) -> jax.Array:
  if name not in OUTPUT_ACTIVATIONS:
    raise ValueError(f"output_activation must be one of {sorted(OUTPUT_ACTIVATIONS)}, got {name!r}")
  return OUTPUT_ACTIVATIONS[name](x)


class VAE(nn.Module):
  """Base of the four models: subclasses define encode(x, train) and decode(z, train)."""

  def __call__(self, x: jax.Array, eps: jax.Array | None = None,
               train: bool = False) -> VAEOutput:
    """x [B, H, W, C] -> VAEOutput; z = mean + exp(logvar / 2) * eps (z = mean without eps)."""
    mean, logvar = self.encode(x, train)
    z = reparameterize(mean, logvar, eps)
    return VAEOutput(self.decode(z, train), mean, logvar, z)
