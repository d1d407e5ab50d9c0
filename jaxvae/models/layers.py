"""Torch- and Keras-compatible building blocks in NHWC flax.linen, with explicit padding."""

import functools
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# Normalization epsilons and activation slopes of the original frameworks.
TORCH_BN_EPS = 1e-5
KERAS_BN_EPS = 1e-3
TORCH_LEAKY_SLOPE = 0.01
# Fraction of the running statistics kept per training step (torch's momentum 0.1; Keras' 0.99).
TORCH_BN_MOMENTUM = 0.9
KERAS_BN_MOMENTUM = 0.99
KERAS_LEAKY_SLOPE = 0.3


class VAEOutput(NamedTuple):
  recon: jax.Array  # [B, H, W, C] in the model's output range
  mean: jax.Array  # [B, L]
  logvar: jax.Array  # [B, L]
  z: jax.Array  # [B, L]


class Conv(nn.Conv):
  """nn.Conv whose training path adds the bias with `bias_add` (a fast bias gradient).

  train=False is nn.Conv unchanged; train=True computes the same convolution plus bias.
  """

  @nn.compact
  def __call__(self, inputs: jax.Array, train: bool = False) -> jax.Array:
    if not train:
      return super().__call__(inputs)
    kh, kw = self.kernel_size
    kernel = self.param("kernel", self.kernel_init, (kh, kw, inputs.shape[-1], self.features),
                        self.param_dtype)
    bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype)
    dtype = jnp.result_type(inputs, kernel)
    y = jax.lax.conv_general_dilated(inputs.astype(dtype), kernel.astype(dtype), self.strides,
                                     self.padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return bias_add(y, bias.astype(dtype))


def torch_conv(features: int, kernel: int, stride: int, pad: int,
               name: str | None = None) -> Conv:
  """torch.nn.Conv2d(k, stride, padding=pad) as an NHWC flax conv."""
  return Conv(features, (kernel, kernel), strides=(stride, stride),
              padding=((pad, pad), (pad, pad)), name=name)


class TorchConvTranspose(nn.ConvTranspose):
  """nn.ConvTranspose set up as torch's ConvTranspose2d, with an exact phase form for training.

  `train=True` (k4 s2 only) computes the same function as one stride-1 2x2 convolution of the
  zero-padded input whose 4 x out channels are the four output phases, interleaved:
  out_full[2m + r, 2n + s] = sum_{t,u in {0,1}} x[m - t, n - u] . K[r + 2t, s + 2u]; then
  torch's crop of `torch_padding` and `output_padding` zero rows. Its gradients are ordinary
  convolutions, which XLA's CPU backend runs 10-20x faster than the gradients of a transposed
  convolution. Without it (inference) the module is nn.ConvTranspose, unchanged.
  """
  torch_padding: int = 0
  output_padding: int = 0

  @nn.compact
  def __call__(self, inputs: jax.Array, train: bool = False) -> jax.Array:
    if not train or self.kernel_size != (4, 4) or self.strides != (2, 2):
      return super().__call__(inputs)
    c_in = inputs.shape[-1]
    kernel = self.param("kernel", self.kernel_init, (4, 4, self.features, c_in),
                        self.param_dtype)  # (kh, kw, out, in), as nn.ConvTranspose's
    bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype)
    dtype = jnp.result_type(inputs, kernel)
    # k[dt, du, c, (r, s, o)] = K[r + 2 (1 - dt), s + 2 (1 - du), o, c]
    k = kernel.reshape(2, 2, 2, 2, self.features, c_in)[::-1, :, ::-1]
    k = jnp.transpose(k, (0, 2, 5, 1, 3, 4)).reshape(2, 2, c_in, 4 * self.features)
    x = jnp.pad(inputs, ((0, 0), (1, 1), (1, 1), (0, 0)))
    y = jax.lax.conv_general_dilated(x.astype(dtype), k.astype(dtype), (1, 1), "VALID",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    b, h, w, _ = y.shape  # [B, H + 1, W + 1, 4 O] -> [B, 2 H + 2, 2 W + 2, O]
    y = jnp.transpose(y.reshape(b, h, w, 2, 2, self.features), (0, 1, 3, 2, 4, 5))
    y = y.reshape(b, 2 * h, 2 * w, self.features)
    p, op = self.torch_padding, self.output_padding
    y = jnp.pad(y, ((0, 0), (0, op), (0, op), (0, 0)))[:, p:2 * h - p + op, p:2 * w - p + op]
    return y + bias.astype(dtype)


# Nearest 2x upsampling then a 3x3 conv: output row 2m + r sees padded low-resolution rows
# m + r + j (j = 0, 1) through the sums of kernel rows _TAPS[r, j] (likewise for columns).
_TAPS = np.array([[[1, 0, 0], [0, 1, 1]], [[1, 1, 0], [0, 0, 1]]], np.float32)
_WIDE_OUTPUTS = 128  # from this many output channels, four 2x2 convs beat one 3x3 conv (CPU)


class UpsampleConv(nn.Conv):
  """conv3x3(pad1(upsample_nearest2x(x))) on a low-resolution x, pad1 being the conv's own zero
  padding of 1 (`edge=False`, Keras 'same') or ReplicationPad2d(1) before an unpadded conv
  (`edge=True`, the DFC-VAE).

  `train=True` computes the same function on the padded low-resolution input: as
  four 2x2 convolutions, one per output phase (2.25x fewer products), or for few output
  channels as one 3x3 convolution with the four phases' kernels side by side (better shaped
  products); no upsampled tensor, ordinary convolution gradients. Otherwise (inference) it
  upsamples and pads, then runs nn.Conv exactly as before.
  """
  edge: bool = False

  @nn.compact
  def __call__(self, inputs: jax.Array, train: bool = False) -> jax.Array:
    if not train:
      x = upsample_nearest2x(inputs)
      return super().__call__(edge_pad1(x) if self.edge else x)
    c_in, o = inputs.shape[-1], self.features
    kernel = self.param("kernel", self.kernel_init, (3, 3, c_in, o), self.param_dtype)
    bias = self.param("bias", self.bias_init, (o,), self.param_dtype)
    dtype = jnp.result_type(inputs, kernel)
    x = jnp.pad(inputs, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge" if self.edge else "constant")
    x, kernel = x.astype(dtype), kernel.astype(dtype)
    conv = lambda x, k: jax.lax.conv_general_dilated(x, k, (1, 1), "VALID",
                                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    b, h, w, _ = inputs.shape
    if o >= _WIDE_OUTPUTS:
      y = jnp.stack([conv(x[:, r:r + h + 1, s:s + w + 1], jnp.einsum(
          "ed,fg,dgco->efco", _TAPS[r], _TAPS[s], kernel).astype(dtype))
                     for r in (0, 1) for s in (0, 1)], axis=-2)  # [B, H, W, 4, O]
    else:
      taps = np.zeros((2, 3, 3), np.float32)  # phase r: padded rows m .. m + 2
      taps[0, 0:2], taps[1, 1:3] = _TAPS[0], _TAPS[1]
      k = jnp.stack([jnp.einsum("ed,fg,dgco->efco", taps[r], taps[s], kernel)
                     for r in (0, 1) for s in (0, 1)], axis=-2)  # [3, 3, C, 4, O]
      y = conv(x, k.reshape(3, 3, c_in, 4 * o).astype(dtype))
    y = jnp.transpose(y.reshape(b, h, w, 2, 2, o), (0, 1, 3, 2, 4, 5))
    return bias_add(y.reshape(b, 2 * h, 2 * w, o), bias.astype(dtype))


def torch_conv_transpose(features: int, kernel: int, stride: int, pad: int,
                         output_padding: int, name: str | None = None) -> TorchConvTranspose:
  """torch.nn.ConvTranspose2d(k, stride, padding, output_padding) as a flax ConvTranspose.

  Out size = (in - 1) * stride - 2 * pad + kernel + output_padding, exactly as torch.
  """
  lo, hi = kernel - 1 - pad, kernel - 1 - pad + output_padding
  return TorchConvTranspose(features, (kernel, kernel), strides=(stride, stride),
                            padding=((lo, hi), (lo, hi)), transpose_kernel=True,
                            torch_padding=pad, output_padding=output_padding, name=name)


def _normalize(x, mean, var, scale, bias, eps):
  """(x - mean) * (scale * rsqrt(var + eps)) + bias in the operations and order of flax's
  nn.BatchNorm (inference parity with the ported checkpoints and the fast path)."""
  y = x - mean
  mul = jax.lax.rsqrt(var + eps)
  mul *= scale
  y *= mul
  y += bias
  return jnp.asarray(y, jnp.result_type(x, scale, bias))


_SUM_WIDTH = 1024  # values per row of channel_sum's first reduction


def channel_sum(x: jax.Array) -> jax.Array:
  """[..., C] -> [C]: the sum over every axis but the last.

  Rows of about _SUM_WIDTH values (k positions x C channels) are summed first, then the k
  partial sums of each channel: k independent accumulators (rounding error about 1e-7 instead
  of XLA's single running sum, ~4e-6 on a 64x32x32 batch), and 10-50x faster on XLA's CPU
  backend, whose reductions over the leading axes of a [N, C] array with small C crawl.
  """
  c = x.shape[-1]
  n = x.size // c
  k = max(1, _SUM_WIDTH // c)
  while n % k:
    k //= 2
  return jnp.sum(jnp.sum(x.reshape(n // k, k * c), axis=0).reshape(k, c), axis=0)


@jax.custom_vjp
def bias_add(y: jax.Array, bias: jax.Array) -> jax.Array:
  """y + bias over the last axis, with the bias gradient summed by channel_sum."""
  return y + bias


bias_add.defvjp(lambda y, b: (y + b, None), lambda _, g: (g, channel_sum(
    g.astype(jnp.promote_types(g.dtype, jnp.float32))).astype(g.dtype)))


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _normalize_batch(x, scale, bias, eps):
  """Training-mode BatchNorm: (y, batch mean, biased batch variance), two-pass statistics."""
  return _normalize_batch_fwd(x, scale, bias, eps)[0]


def _normalize_batch_fwd(x, scale, bias, eps):
  n = x.size // x.shape[-1]
  mean = channel_sum(x) / n
  mean = mean + channel_sum(x - mean) / n  # one refinement: the mean to about an ulp
  centered = x - mean
  var = channel_sum(jnp.square(centered)) / n
  invstd = jax.lax.rsqrt(var + eps)
  y = centered * (invstd * scale) + bias
  return (y, mean, var), (centered, invstd, scale, bias)


def _normalize_batch_bwd(eps, res, cotangents):
  """torch's batch_norm_backward: gx = scale invstd (g - mean(g) - xhat mean(g xhat)).

  Only y's cotangent flows: the statistics feed the running averages, outside the loss.
  """
  del eps
  centered, invstd, scale, bias = res
  n = centered.size // centered.shape[-1]
  g = cotangents[0].astype(centered.dtype)
  sum_g = channel_sum(g)
  dot = channel_sum(g * centered)
  k = dot * invstd * invstd / n
  gx = (g - centered * k - sum_g / n) * (invstd * scale)
  return gx, (dot * invstd).astype(scale.dtype), sum_g.astype(bias.dtype)


_normalize_batch.defvjp(_normalize_batch_fwd, _normalize_batch_bwd)


class BatchNorm(nn.Module):
  """BatchNorm over the last axis with one original framework's training semantics.

  Variables as flax's nn.BatchNorm: params `scale`, `bias`; batch_stats `mean`, `var`.
  Inference: y = (x - mean) * (scale * rsqrt(var + eps)) + bias, computed as nn.BatchNorm does.
  Training: the batch mean m and biased variance v = mean((x - m)^2) (two-pass, float32 at
  least, over all axes but the last: the global batch however it is sharded) normalise x, and
    mean <- momentum * mean + (1 - momentum) * m
    var  <- momentum * var + (1 - momentum) * (v n / (n - 1) if unbiased_update else v),
  with torch's backward formula (see _normalize_batch_bwd).
  torch BatchNorm2d: momentum 0.9 (torch's 0.1), unbiased_update, eps 1e-5; Keras 3
  BatchNormalization: momentum 0.99, biased update, eps 1e-3.
  """
  use_running_average: bool
  epsilon: float
  momentum: float
  unbiased_update: bool = False

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    features = (x.shape[-1],)
    ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros(features, jnp.float32))
    ra_var = self.variable("batch_stats", "var", lambda: jnp.ones(features, jnp.float32))
    scale = self.param("scale", nn.initializers.ones, features, jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, features, jnp.float32)
    mean, var = ra_mean.value, ra_var.value
    if not self.use_running_average:
      xf = x.astype(jnp.promote_types(x.dtype, jnp.float32))  # float32 at least
      y, mean, var = _normalize_batch(xf, scale, bias, self.epsilon)
      if not self.is_initializing():
        n = x.size // x.shape[-1]
        update = var * (n / (n - 1)) if self.unbiased_update else var
        ra_mean.value = self.momentum * ra_mean.value + (1.0 - self.momentum) * mean
        ra_var.value = self.momentum * ra_var.value + (1.0 - self.momentum) * update
      return jnp.asarray(y, jnp.result_type(x, scale, bias))
    return _normalize(x, mean, var, scale, bias, self.epsilon)


def batch_norm(train: bool, eps: float, momentum: float, name: str,
               unbiased_update: bool = False) -> BatchNorm:
  """BatchNorm with the original framework's eps and update; momentum = 1 - torch momentum."""
  return BatchNorm(use_running_average=not train, epsilon=eps, momentum=momentum,
                   unbiased_update=unbiased_update, name=name)


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
