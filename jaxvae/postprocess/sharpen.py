"""The report's unsharp mask around OpenCV's GaussianBlur: its 8-bit path and a float path."""

import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxvae.postprocess import levels as lv

Array = jax.Array


def _gaussian_kernel(ksize: int, sigma: float) -> np.ndarray:
  """OpenCV getGaussianKernel: exp(-(i - (ksize-1)/2)^2 / (2 sigma^2)), normalised, float64."""
  x = np.arange(ksize) - (ksize - 1) / 2
  k = np.exp(-0.5 * x * x / (sigma * sigma))
  return k / k.sum()


def _gaussian_kernel_fixed(ksize: int, sigma: float) -> list[int]:
  """OpenCV's bit-exact 8-bit Gaussian kernel: 8 fractional bits, error-diffused, sum 256."""
  k = _gaussian_kernel(ksize, sigma)
  out = [0] * ksize
  err, total = 0.0, 0
  for i in range(ksize // 2):
    v = k[i] * 256 + err
    q = int(np.rint(v))
    err = v - q
    out[i] = out[ksize - 1 - i] = q
    total += q
  out[ksize // 2] = 256 - 2 * total
  return out


def _separable(x: Array, kernel: Sequence[Any], radius: int, fence: bool = False) -> Array:
  """sum_ij k_i k_j x(p + (i, j)) on [B, H, W, ...] with BORDER_REFLECT_101, rows first.

  With `fence` the row sums are computed once into memory (else XLA recomputes them per tap).
  """
  h, w = x.shape[1], x.shape[2]
  p = lv.reflect101(x, radius, radius)
  rows = sum(k * p[:, :, j:j + w] for j, k in enumerate(kernel))
  if fence:
    (rows,) = lv.fence(rows)
  return sum(k * rows[:, i:i + h] for i, k in enumerate(kernel))


def _check(ksize: int, sigma: float) -> None:
  if ksize < 1 or ksize % 2 != 1:
    raise ValueError(f"unsharp: ksize must be a positive odd size, got {ksize}.")
  if sigma <= 0:
    raise ValueError(f"unsharp: sigma must be > 0, got {sigma}.")


@functools.partial(jax.jit, static_argnames=("ksize", "sigma", "threshold"))
def unsharp_levels(planes: lv.Planes, ksize: int = 5, sigma: float = 1.0, amount: float = 1.5,
                   threshold: float = 0.0) -> lv.Planes:
  """The report's unsharp_mask on int32 level planes: round(clip((1 + a) u - a G(u), 0, 255)).

  G is OpenCV's bit-exact 8-bit GaussianBlur (kernel in 8-bit fixed point, (sum + 2^15) >> 16,
  BORDER_REFLECT_101); the blend is float32 (exact for amounts whose products with levels are,
  e.g. 1.5 and 4), rounded half to even as np.round. Pixels with |u - G(u)| < threshold keep u.
  """
  _check(ksize, sigma)
  kernel = _gaussian_kernel_fixed(ksize, sigma)
  out = []
  for u in planes:
    blurred = (_separable(u, kernel, ksize // 2, fence=True) + (1 << 15)) >> 16
    u, blurred = u.astype(jnp.float32), blurred.astype(jnp.float32)
    sharp = jnp.round(jnp.clip((amount + 1.0) * u - amount * blurred, 0.0, 255.0))
    if threshold > 0:
      sharp = jnp.where(jnp.abs(u - blurred) < threshold, u, sharp)
    out.append(sharp.astype(jnp.int32))
  return lv.output(*out)


def unsharp(images: Array, ksize: int = 5, sigma: float = 1.0, amount: float = 1.5,
            threshold: float = 0.0, quantize: bool = True) -> Array:
  """Unsharp mask: out = clip((1 + amount) x - amount G(x)), G a ksize x ksize Gaussian blur.

  Pixels with |x - G(x)| < threshold (0-255 scale) keep x. With `quantize` (uint8-faithful, the
  default) x is rounded to 8-bit levels, G is OpenCV's bit-exact 8-bit GaussianBlur and the
  result is rounded half to even as np.round (`unsharp_levels`); otherwise G is the float
  Gaussian and nothing is rounded.

  Args:
    images: [B, H, W, C] in [0, 1].
    ksize: odd Gaussian kernel size.
    sigma: Gaussian sigma in pixels, > 0.
    amount: sharpening strength; 0 keeps the image.
    threshold: low-contrast threshold on the 0-255 scale; 0 sharpens everywhere.
    quantize: uint8-faithful arithmetic.

  Returns:
    [B, H, W, C] float32 in [0, 1].
  """
  _check(ksize, sigma)
  x = lv.as_images(images, "unsharp")
  if quantize:
    return lv.on_levels(unsharp_levels, x, ksize, sigma, amount, threshold)
  u = jnp.clip(x, 0.0, 1.0)
  kernel = [float(v) for v in _gaussian_kernel(ksize, sigma).astype(np.float32)]
  blurred = _separable(u, kernel, ksize // 2)
  sharp = jnp.clip((amount + 1.0) * u - amount * blurred, 0.0, 1.0)
  if threshold > 0:
    sharp = jnp.where(jnp.abs(u - blurred) < threshold / 255.0, u, sharp)
  return sharp
