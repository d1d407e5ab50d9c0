"""OpenCV's bilateralFilter, batched: its 8-bit path on level planes and its float path."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxvae.postprocess import levels as lv

Array = jax.Array


def _taps(d: int, sigma_space: float) -> tuple[int, list[tuple[int, int, float]]]:
  """OpenCV's radius and (dy, dx, float32 weight) taps, in its order, on the disc r <= radius."""
  if sigma_space <= 0:
    sigma_space = 1.0
  radius = round(sigma_space * 1.5) if d <= 0 else d // 2
  radius = max(radius, 1)
  coeff = -0.5 / (sigma_space * sigma_space)
  taps = []
  for i in range(-radius, radius + 1):
    for j in range(-radius, radius + 1):
      r = math.sqrt(i * i + j * j)
      if r <= radius:
        taps.append((i, j, float(np.float32(math.exp(r * r * coeff)))))
  return radius, taps


def _color_table(channels: int, sigma_color: float) -> np.ndarray:
  """OpenCV's float32 colour weights exp(-D^2 / (2 sigma_color^2)), D = 0 .. 255 channels."""
  if sigma_color <= 0:
    sigma_color = 1.0
  coeff = -0.5 / (sigma_color * sigma_color)
  return np.exp(np.arange(256 * channels, dtype=np.float64) ** 2 * coeff).astype(np.float32)


@functools.partial(jax.jit, static_argnames=("d", "sigma_color", "sigma_space"))
def bilateral_levels(planes: lv.Planes, d: int = 5, sigma_color: float = 75.0,
                     sigma_space: float = 75.0) -> lv.Planes:
  """OpenCV's 8-bit bilateralFilter on 1 or 3 int32 level planes; rounds half to even.

  out(p) = cvRound(sum_q w(p, q) x(q) / sum_q w(p, q)) over the taps q = p + (i, j) in OpenCV's
  order, w = space(i, j) color(D) in float32, D = sum over channels of |x_c(q) - x_c(p)|,
  borders BORDER_REFLECT_101. D is symmetric, so the weight of tap -k at p is that of tap k at
  p - k: the weights of the taps after the centre are computed once, on the image grown by the
  radius, kept in memory, and read shifted for the taps before it.
  """
  radius, taps = _taps(d, sigma_space)
  table = jnp.asarray(_color_table(len(planes), sigma_color))
  r = radius
  b, h, w = planes[0].shape
  padded = [lv.reflect101(p, 2 * r, 2 * r) for p in planes]

  def window(x, i, j, di, dj):  # x at rows i .. i + h + di, columns j .. j + w + dj (padded).
    return lax.slice(x, (0, i, j), (b, i + h + di, j + w + dj))

  after = [(i, j, s) for i, j, s in taps if (i, j) > (0, 0)]
  weights = []
  for i, j, space in after:  # On the grown grid: rows and columns -r .. size + r.
    dist = sum(jnp.abs(window(p, r, r, 2 * r, 2 * r) - window(p, r + i, r + j, 2 * r, 2 * r))
               for p in padded)
    dist = jnp.minimum(dist, table.shape[0] - 1)  # Levels outside [0, 255] stay in the table.
    weights.append(np.float32(space) * table.at[dist].get(mode="promise_in_bounds"))
  weights = dict(zip([(i, j) for i, j, _ in after], lv.fence(*weights)))
  values = [p.astype(jnp.float32) for p in padded]
  total = [jnp.zeros((b, h, w), jnp.float32) for _ in planes]
  wsum = jnp.zeros((b, h, w), jnp.float32)
  for i, j, space in taps:
    if (i, j) == (0, 0):
      weight = jnp.full((b, h, w), np.float32(space) * table[0])
    elif (i, j) > (0, 0):
      weight = window(weights[i, j], r, r, 0, 0)
    else:  # Tap (i, j) at p is tap (-i, -j) at p + (i, j).
      weight = window(weights[-i, -j], r + i, r + j, 0, 0)
    total = [t + window(v, 2 * r + i, 2 * r + j, 0, 0) * weight for t, v in zip(total, values)]
    wsum = wsum + weight
  (inverse,) = lv.fence(1.0 / wsum)
  return lv.output(*(jnp.round(t * inverse).astype(jnp.int32) for t in total))


def bilateral(images: Array, d: int = 5, sigma_color: float = 75.0, sigma_space: float = 75.0,
              quantize: bool = True) -> Array:
  """OpenCV bilateralFilter, batched; sigmas on the 0-255 scale.

  out(p) = sum_q w(p, q) x(q) / sum_q w(p, q) over q with |q - p| <= radius,
  w = exp(-|q - p|^2 / (2 sigma_space^2)) exp(-D^2 / (2 sigma_color^2)),
  D = sum over channels of |x_c(q) - x_c(p)| (OpenCV's L1 colour distance, on 0-255),
  radius = d // 2 (or round(1.5 sigma_space) when d <= 0), at least 1; borders BORDER_REFLECT_101.

  With `quantize` (uint8-faithful, the default) the input is rounded to 8-bit levels, the colour
  weight is looked up in OpenCV's float32 table at the integer D, the sums are float32 in
  OpenCV's tap order and the result is rounded half to even (cvRound), as its 8-bit path
  (`bilateral_levels`). Where the weighted mean is within float32 error (~3e-5) of k + 0.5, the
  summation order decides the level; OpenCV 5 sums through its IPP HAL, so there (about 1.5e-5
  of values on noise and photo crops) the two differ by 1 level.

  Args:
    images: [B, H, W, C] in [0, 1] (OpenCV takes C = 1 or 3).
    d: neighbourhood diameter.
    sigma_color: colour sigma; <= 0 means 1, as in OpenCV.
    sigma_space: space sigma; <= 0 means 1, as in OpenCV.
    quantize: uint8-faithful arithmetic.

  Returns:
    [B, H, W, C] float32 in [0, 1].
  """
  x = lv.as_images(images, "bilateral")
  if quantize:
    return lv.on_levels(bilateral_levels, x, d, sigma_color, sigma_space)
  if sigma_color <= 0:
    sigma_color = 1.0
  radius, taps = _taps(d, sigma_space)
  # Distances on [0, 1], sigma_color on 0-255.
  color_coeff = -0.5 / (sigma_color * sigma_color) * (255.0 * 255.0)
  h, w, c = x.shape[1:]
  center = jnp.clip(x, 0.0, 1.0)
  padded = lv.reflect101(center, radius, radius)
  total = jnp.zeros(x.shape, jnp.float32)
  wsum = jnp.zeros(x.shape[:3], jnp.float32)
  for i, j, space_w in taps:
    near = lax.slice(padded, (0, radius + i, radius + j, 0), (x.shape[0], radius + i + h,
                                                              radius + j + w, c))
    dist = jnp.sum(jnp.abs(near - center), axis=-1)
    weight = space_w * jnp.exp(dist * dist * color_coeff)
    total = total + near * weight[..., None]
    wsum = wsum + weight
  return total * (1.0 / wsum)[..., None]
