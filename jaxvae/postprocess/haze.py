"""Dark-channel-prior dehazing in float32: the report's formula and He et al.'s refinement."""

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxvae.postprocess import levels as lv, report_haze
from jaxvae.postprocess.color import LUMA

Array = jax.Array


def dark_channel(images: Array, window: int = 15) -> Array:
  """He et al.'s dark channel, [B, H, W]: min over channels and a window^2 patch, edge padded."""
  if window < 1 or window % 2 != 1:
    raise ValueError(f"dark_channel: window must be a positive odd size, got {window}.")
  return lv.window_min(jnp.min(images, axis=-1), window)


def atmospheric_light(images: Array, dark: Array, top_fraction: float = 0.001) -> Array:
  """Mean colour of the top_fraction pixels with the brightest dark channel; [B, C].

  Among tied dark-channel values the pixels EARLIER in raster order win: the set that
  np.argsort(-dark, kind="stable")[:n] picks. (The report's np.argsort default, quicksort,
  leaves the order of ties unspecified; a 15 x 15 minimum filter makes plateaus, so ties at the
  top are the rule, not the exception.)
  """
  b, h, w, c = images.shape
  n = report_haze.num_brightest(h * w, top_fraction)
  _, idx = lax.top_k(dark.reshape(b, h * w), n)  # Among equal values the lower index first.
  pixels = jnp.take_along_axis(images.reshape(b, h * w, c), idx[..., None], axis=1)
  return jnp.mean(pixels, axis=1)


def _box_mean(x: Array, radius: int) -> Array:
  """Mean of [B, H, W] over the (2r+1)^2 window clipped to the image (He's boxfilter / N)."""
  h, w = x.shape[1], x.shape[2]
  k = 2 * radius + 1
  s = lax.reduce_window(x, 0.0, lax.add, (1, k, 1), (1, 1, 1), ((0, 0), (radius, radius), (0, 0)))
  s = lax.reduce_window(s, 0.0, lax.add, (1, 1, k), (1, 1, 1), ((0, 0), (0, 0), (radius, radius)))

  def counts(size):
    i = np.arange(size)
    return np.minimum(i + radius, size - 1) - np.maximum(i - radius, 0) + 1

  return s / jnp.asarray(np.outer(counts(h), counts(w)), jnp.float32)


def guided_filter(guide: Array, src: Array, radius: int, eps: float) -> Array:
  """He et al.'s guided filter with a grey guide I on [B, H, W].

  a = cov(I, p) / (var(I) + eps),  b = mean(p) - a mean(I),  q = mean(a) I + mean(b),
  every mean over the (2 radius + 1)^2 window clipped to the image. I and p are first centred on
  their image means (q shifts with p and is unchanged by a shift of I), which keeps the float32
  cancellation in var and cov small.
  """
  guide_mean = jnp.mean(guide, axis=(1, 2), keepdims=True)
  src_mean = jnp.mean(src, axis=(1, 2), keepdims=True)
  guide, src = guide - guide_mean, src - src_mean
  mean_i = _box_mean(guide, radius)
  mean_p = _box_mean(src, radius)
  var_i = _box_mean(guide * guide, radius) - mean_i * mean_i
  cov_ip = _box_mean(guide * src, radius) - mean_i * mean_p
  a = cov_ip / (var_i + eps)
  b = mean_p - a * mean_i
  return _box_mean(a, radius) * guide + _box_mean(b, radius) + src_mean


def dehaze(images: Array, variant: str = "report", window: int = 15, omega: float = 0.95,
           t0: float = 0.1, top_fraction: float = 0.001, radius: int | None = None,
           eps: float = 1e-3) -> Array:
  """Dark-channel-prior dehazing (He, Sun and Tang), in float32, on [0, 1] float images.

  (The presets run `dehaze_levels` instead: the report's own float64 arithmetic and its uint8
  truncation, bit for bit.)

  A = mean colour of the top_fraction pixels with the brightest dark channel (see
  `atmospheric_light` for ties), t = 1 - omega dark(I / A), J = (I - A) / max(t, t0) + A.

  variant "report": exactly the report's formula: t gets +0.25, no refinement, J / max(J).
  variant "he2011": He et al.: t refined by a guided filter (grey guide 0.299 R + 0.587 G +
  0.114 B, eps) of `radius`, default max(1, min(H, W) // 8), 8 on 64 x 64 (the report's unused
  refinement had a fixed radius 40, which its box filter could not handle on 64 x 64 images).

  Two guards the report lacks, active only where its arithmetic divides by zero: A is floored at
  1e-6 per channel, and J is divided by max(J) only where max(J) > 0. The output is clipped to
  [0, 1].

  Args:
    images: [B, H, W, 3] RGB in [0, 1].
    variant: "report" or "he2011".
    window: odd dark-channel window.
    omega: fraction of haze removed; 0 makes he2011 the identity (to float32 rounding).
    t0: lower bound on the transmission.
    top_fraction: share of pixels averaged for A; the count is max(1, int(H W top_fraction)).
    radius: he2011 guided-filter radius; None fits it to the image.
    eps: he2011 guided-filter regulariser.

  Returns:
    [B, H, W, 3] float32 in [0, 1].
  """
  if variant not in ("report", "he2011"):
    raise ValueError(f"dehaze: unknown variant {variant!r}; expected 'report' or 'he2011'.")
  x = lv.as_images(images, "dehaze", channels=3)
  # Computed on the 0-255 scale, where 8-bit inputs are integers and A (a mean of 4 levels) is
  # exact. Where the dark channel is 0 (common after enhance), t = 1.25 and every value below is
  # exact up to one final rounding, so J / max(J) is the correctly rounded value the report's
  # float64 arithmetic gives, and it lands on the same side of the next stage's rounding.
  _, h, w, _ = x.shape
  levels = x * 255.0
  light = atmospheric_light(levels, dark_channel(levels, window), top_fraction)
  light = jnp.maximum(light, 255.0 * 1e-6)[:, None, None, :]
  t = 1.0 - omega * dark_channel(levels / light, window)
  if variant == "report":
    t = t + 0.25
  else:
    r = max(1, min(h, w) // 8) if radius is None else radius
    grey = x @ jnp.asarray(LUMA, jnp.float32)
    t = guided_filter(grey, t, r, eps)
  t = jnp.maximum(t, t0)
  num = levels - light + light * t[..., None]  # J = (I - A) / t + A = num / t.
  j = num / t[..., None]
  if variant == "he2011":
    return jnp.clip(j / 255.0, 0.0, 1.0)
  return _normalized(num, t, j)


def _normalized(num: Array, t: Array, j: Array) -> Array:
  """J / max(J) for J = num / t ([B, H, W, C], t [B, H, W]), clipped; J / 255 where max(J) <= 0.

  J / max(J) = (num t_max) / (num_max t), rounded once. Divided channel by channel: XLA turns a
  division by a broadcast (t over channels) into a product with its reciprocal, which rounds
  twice.
  """
  b, h, w, c = num.shape
  flat = j.reshape(b, h * w * c)
  at = jnp.argmax(flat, axis=1)[:, None]
  peak = jnp.take_along_axis(flat, at, axis=1)[:, :, None]
  num_max = jnp.take_along_axis(num.reshape(b, -1), at, axis=1)[:, :, None]
  t_max = jnp.take_along_axis(t.reshape(b, -1), at // c, axis=1)[:, :, None]
  den = jnp.where(peak > 0, num_max, 1.0) * t
  out = jnp.stack([num[..., i] * t_max / den for i in range(c)], axis=-1)
  out = jnp.where(peak[..., None] > 0, out, j / 255.0)
  return jnp.clip(out, 0.0, 1.0)
