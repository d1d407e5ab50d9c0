"""The report's post-processing (enhance, dehaze, smooth, sharpen) in batched, jit/vmap-safe JAX."""

import functools
import inspect
import math
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

Array = jax.Array
Params = Mapping[str, Mapping[str, Any]]

# ITU-R 601-2 luma in PIL's 16-bit fixed point: round(2**16 * (0.299, 0.587, 0.114)).
_PIL_LUMA = (19595, 38470, 7471)
_LUMA = (0.299, 0.587, 0.114)


def _as_images(images: Array, stage: str, channels: int | None = None) -> Array:
  """Checks the [B, H, W, C] layout and returns float32 images."""
  images = jnp.asarray(images)
  if images.ndim != 4:
    raise ValueError(f"{stage}: expected [B, H, W, C] images, got shape {images.shape}.")
  if channels is not None and images.shape[-1] != channels:
    raise ValueError(f"{stage}: expected {channels} channels, got shape {images.shape}.")
  return images.astype(jnp.float32)


def to_levels(images: Array) -> Array:
  """8-bit levels of [0, 1] images: round(clip(x, 0, 1) * 255) in float32, half to even."""
  return jnp.round(jnp.clip(images, 0.0, 1.0) * 255.0)


def _from_levels(levels: Array) -> Array:
  """Integer-valued 8-bit levels -> levels / 255 in float32, correctly rounded like u8 / 255.

  XLA turns a division by the constant 255 into a product with 1 / 255, 1 ulp off for most
  levels. So of q = l (1 / 255) and its two neighbours we keep the c with the least
  |c 255 - l| = |(256 c - l) - c|, which float32 computes exactly (a power-of-2 product, then
  two Sterbenz subtractions).
  """
  levels = levels.astype(jnp.float32)
  best = levels * np.float32(1 / 255)
  best_err = jnp.abs((best * 256.0 - levels) - best)
  for c in (jnp.nextafter(best, -jnp.inf), jnp.nextafter(best, jnp.inf)):
    err = jnp.abs((c * 256.0 - levels) - c)
    best = jnp.where(err < best_err, c, best)
    best_err = jnp.minimum(err, best_err)
  return best


def _reflect101(x: Array, ry: int, rx: int) -> Array:
  """Pads H and W of [B, H, W, ...] like OpenCV's BORDER_REFLECT_101 (numpy's 'reflect')."""
  pad = [(0, 0), (ry, ry), (rx, rx)] + [(0, 0)] * (x.ndim - 3)
  return jnp.pad(x, pad, mode="reflect")


# Enhance.


def _pil_luma(u: Array) -> Array:
  """PIL's RGB -> L on int32 levels: (19595 R + 38470 G + 7471 B + 2**15) >> 16."""
  r, g, b = _PIL_LUMA
  return jnp.right_shift(u[..., 0] * r + u[..., 1] * g + u[..., 2] * b + 0x8000, 16)


def _pil_blend(degenerate: Array, image: Array, alpha: float) -> Array:
  """PIL's Image.blend on int32 levels: trunc(clip(f32(d) + f32(f32(alpha) (i - d)), 0, 255)).

  PIL rounds the product to float32 before the sum. XLA on CPU contracts a * b + c into one FMA
  (one rounding), which moves sums that land on an integer (127 + 2.2 * -55 gives 5.9999974, not
  6), and lax.optimization_barrier does not stop it. So unless every product is exact in float32
  (alpha = 2 or 3: the FMA then changes nothing), the 511 possible products of a Python alpha come
  from a float32 table. A traced alpha multiplies and may be 1 level off PIL.
  """
  diff = image - degenerate
  products = None
  if isinstance(alpha, (int, float)):
    products = np.float32(alpha) * np.arange(-255, 256, dtype=np.float32)
    exact = np.float64(np.float32(alpha)) * np.arange(-255, 256)
    if np.array_equal(products, exact):
      products = None
  if products is None:
    product = jnp.asarray(alpha, jnp.float32) * diff.astype(jnp.float32)
  else:
    product = jnp.take(jnp.asarray(products), diff + 255, mode="clip")
  t = degenerate.astype(jnp.float32) + product
  return jnp.floor(jnp.clip(t, 0.0, 255.0)).astype(jnp.int32)


def enhance(images: Array, saturation: float = 2.0, contrast: float = 3.0,
            quantize: bool = True) -> Array:
  """PIL ImageEnhance.Color(saturation) then ImageEnhance.Contrast(contrast), batched.

  Color:    y = blend(L(x), x, s),  L = ITU-R 601 luma image.
  Contrast: z = blend(m, y, c),     m = int(mean(L(y)) + 0.5), the mean luma of each image.
  blend(d, x, a) = d + a (x - d), clipped to [0, 255].

  With `quantize` (uint8-faithful, the default) the input is rounded to 8-bit levels and every
  step is PIL's integer arithmetic: L in 16-bit fixed point with rounding, blend in float32 then
  truncated, m from the integer luma sum; the output is a multiple of 1/255. Without it the same
  formulas run on floats (L = 0.299 R + 0.587 G + 0.114 B, m = mean luma, clipped to [0, 1]).

  Args:
    images: [B, H, W, 3] RGB in [0, 1].
    saturation: PIL Color factor; 1 keeps the image.
    contrast: PIL Contrast factor; 1 keeps the image.
    quantize: uint8-faithful PIL arithmetic.

  Returns:
    [B, H, W, 3] float32 in [0, 1].
  """
  x = _as_images(images, "enhance", channels=3)
  if not quantize:
    luma = jnp.asarray(_LUMA, jnp.float32)
    # (1 - a) d + a x rather than d + a (x - d): factor 1 then returns x exactly.
    lum = (x @ luma)[..., None]
    y = jnp.clip((1.0 - saturation) * lum + saturation * x, 0.0, 1.0)
    mean = jnp.mean(y @ luma, axis=(1, 2))[:, None, None, None]
    return jnp.clip((1.0 - contrast) * mean + contrast * y, 0.0, 1.0)
  u = to_levels(x).astype(jnp.int32)
  y = _pil_blend(_pil_luma(u)[..., None], u, saturation)
  n = x.shape[1] * x.shape[2]
  total = jnp.sum(_pil_luma(y), axis=(1, 2))  # int32: exact below 2**31 / 511 pixels per image.
  mean = (2 * total + n) // (2 * n)  # int(total / n + 0.5), as PIL's ImageStat-based Contrast.
  return _from_levels(_pil_blend(mean[:, None, None, None], y, contrast))


# Dehaze.


def _window_min(x: Array, window: int) -> Array:
  """Min over a window x window square of [B, H, W], edge padded (= clipped to the image)."""
  r = window // 2
  x = lax.reduce_window(x, jnp.inf, lax.min, (1, window, 1), (1, 1, 1), ((0, 0), (r, r), (0, 0)))
  return lax.reduce_window(x, jnp.inf, lax.min, (1, 1, window), (1, 1, 1),
                           ((0, 0), (0, 0), (r, r)))


def dark_channel(images: Array, window: int = 15) -> Array:
  """He et al.'s dark channel, [B, H, W]: min over channels and a window^2 patch, edge padded."""
  if window < 1 or window % 2 != 1:
    raise ValueError(f"dark_channel: window must be a positive odd size, got {window}.")
  return _window_min(jnp.min(images, axis=-1), window)


def _num_brightest(num_pixels: int, top_fraction: float) -> int:
  """max(floor(num_pixels * top_fraction), 1); 0.1% of 64 x 64 is 4 pixels."""
  return max(math.floor(round(num_pixels * top_fraction, 9)), 1)


def atmospheric_light(images: Array, dark: Array, top_fraction: float = 0.001) -> Array:
  """Mean colour of the top_fraction pixels with the brightest dark channel; [B, C].

  Ties are broken like a stable ascending argsort whose last n indices are kept: among equal
  dark-channel values the pixels later in raster order win. (The report's np.argsort default,
  quicksort, leaves the order of ties unspecified; a 15 x 15 minimum filter makes plateaus, so
  ties at the top are the rule, not the exception.)
  """
  b, h, w, c = images.shape
  n = _num_brightest(h * w, top_fraction)
  flat = dark.reshape(b, h * w)
  # lax.top_k prefers the lower index among equals; reversing the raster order makes it prefer
  # the later pixel, i.e. the set kept by np.argsort(kind="stable")[-n:].
  _, idx = lax.top_k(flat[:, ::-1], n)
  idx = h * w - 1 - idx
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
  """Dark-channel-prior dehazing (He, Sun and Tang), in float32.

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
    top_fraction: share of pixels averaged for A; the count is max(floor(H W top_fraction), 1).
    radius: he2011 guided-filter radius; None fits it to the image.
    eps: he2011 guided-filter regulariser.

  Returns:
    [B, H, W, 3] float32 in [0, 1].
  """
  if variant not in ("report", "he2011"):
    raise ValueError(f"dehaze: unknown variant {variant!r}; expected 'report' or 'he2011'.")
  x = _as_images(images, "dehaze", channels=3)
  # Computed on the 0-255 scale, where 8-bit inputs are integers and A (a mean of 4 levels) is
  # exact. Where the dark channel is 0 (common after enhance), t = 1.25 and every value below is
  # exact up to one final rounding, so J / max(J) is the correctly rounded value the report's
  # float64 arithmetic gives, and it lands on the same side of the next stage's rounding.
  b, h, w, c = x.shape
  levels = x * 255.0
  light = atmospheric_light(levels, dark_channel(levels, window), top_fraction)
  light = jnp.maximum(light, 255.0 * 1e-6)[:, None, None, :]
  t = 1.0 - omega * dark_channel(levels / light, window)
  if variant == "report":
    t = t + 0.25
  else:
    r = max(1, min(h, w) // 8) if radius is None else radius
    grey = x @ jnp.asarray(_LUMA, jnp.float32)
    t = guided_filter(grey, t, r, eps)
  t = jnp.maximum(t, t0)
  num = levels - light + light * t[..., None]  # J = (I - A) / t + A = num / t.
  j = num / t[..., None]
  if variant == "he2011":
    return jnp.clip(j / 255.0, 0.0, 1.0)
  # J / max(J) = (num t_max) / (num_max t), rounded once. Divided channel by channel: XLA turns
  # a division by a broadcast (t over channels) into a product with its reciprocal, which rounds
  # twice.
  flat = j.reshape(b, h * w * c)
  at = jnp.argmax(flat, axis=1)[:, None]
  peak = jnp.take_along_axis(flat, at, axis=1)[:, :, None]
  num_max = jnp.take_along_axis(num.reshape(b, -1), at, axis=1)[:, :, None]
  t_max = jnp.take_along_axis(t.reshape(b, -1), at // c, axis=1)[:, :, None]
  den = jnp.where(peak > 0, num_max, 1.0) * t
  out = jnp.stack([num[..., i] * t_max / den for i in range(c)], axis=-1)
  out = jnp.where(peak[..., None] > 0, out, j / 255.0)
  return jnp.clip(out, 0.0, 1.0)


# Bilateral filter.


def _bilateral_taps(d: int, sigma_space: float) -> tuple[int, list[tuple[int, int, float]]]:
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


def bilateral(images: Array, d: int = 5, sigma_color: float = 75.0, sigma_space: float = 75.0,
              quantize: bool = True) -> Array:
  """OpenCV bilateralFilter, batched; sigmas on the 0-255 scale.

  out(p) = sum_q w(p, q) x(q) / sum_q w(p, q) over q with |q - p| <= radius,
  w = exp(-|q - p|^2 / (2 sigma_space^2)) exp(-D^2 / (2 sigma_color^2)),
  D = sum over channels of |x_c(q) - x_c(p)| (OpenCV's L1 colour distance, on 0-255),
  radius = d // 2 (or round(1.5 sigma_space) when d <= 0), at least 1; borders BORDER_REFLECT_101.

  With `quantize` (uint8-faithful, the default) the input is rounded to 8-bit levels, the colour
  weight is looked up in OpenCV's float32 table at the integer D, the sums are float32 in
  OpenCV's tap order and the result is rounded half to even (cvRound), as its 8-bit path. Where
  the weighted mean is within float32 error (~3e-5) of k + 0.5, the summation order decides the
  level; OpenCV 5 sums through its IPP HAL, so there (about 1.5e-5 of values on noise and
  photo crops) the two differ by 1 level.

  Args:
    images: [B, H, W, C] in [0, 1] (OpenCV takes C = 1 or 3).
    d: neighbourhood diameter.
    sigma_color: colour sigma; <= 0 means 1, as in OpenCV.
    sigma_space: space sigma; <= 0 means 1, as in OpenCV.
    quantize: uint8-faithful arithmetic.

  Returns:
    [B, H, W, C] float32 in [0, 1].
  """
  x = _as_images(images, "bilateral")
  if sigma_color <= 0:
    sigma_color = 1.0
  radius, taps = _bilateral_taps(d, sigma_space)
  color_coeff = -0.5 / (sigma_color * sigma_color)
  h, w, c = x.shape[1:]
  if quantize:
    center = to_levels(x).astype(jnp.int32)
    table = jnp.asarray(
        np.exp(np.arange(256 * c, dtype=np.float64) ** 2 * color_coeff).astype(np.float32))
  else:
    center = jnp.clip(x, 0.0, 1.0)
    color_coeff *= 255.0 * 255.0  # Distances on [0, 1], sigma_color on 0-255.
  padded = _reflect101(center, radius, radius)
  total = jnp.zeros(x.shape, jnp.float32)
  wsum = jnp.zeros(x.shape[:3], jnp.float32)
  for i, j, space_w in taps:
    near = lax.slice(padded, (0, radius + i, radius + j, 0), (x.shape[0], radius + i + h,
                                                              radius + j + w, c))
    dist = jnp.sum(jnp.abs(near - center), axis=-1)
    if quantize:
      weight = space_w * jnp.take(table, dist, mode="clip")
    else:
      weight = space_w * jnp.exp(dist * dist * color_coeff)
    total = total + near.astype(jnp.float32) * weight[..., None]
    wsum = wsum + weight
  out = total * (1.0 / wsum)[..., None]
  return _from_levels(jnp.round(out)) if quantize else out


# Unsharp mask.


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


def _separable(x: Array, kernel: Sequence[Any], radius: int) -> Array:
  """sum_ij k_i k_j x(p + (i, j)) on [B, H, W, C] with BORDER_REFLECT_101, rows first."""
  h, w = x.shape[1], x.shape[2]
  p = _reflect101(x, radius, radius)
  rows = sum(k * p[:, :, j:j + w] for j, k in enumerate(kernel))
  return sum(k * rows[:, i:i + h] for i, k in enumerate(kernel))


def unsharp(images: Array, ksize: int = 5, sigma: float = 1.0, amount: float = 1.5,
            threshold: float = 0.0, quantize: bool = True) -> Array:
  """Unsharp mask: out = clip((1 + amount) x - amount G(x)), G a ksize x ksize Gaussian blur.

  Pixels with |x - G(x)| < threshold (0-255 scale) keep x. With `quantize` (uint8-faithful, the
  default) x is rounded to 8-bit levels, G is OpenCV's bit-exact 8-bit GaussianBlur (kernel in
  8-bit fixed point, (sum + 2^15) >> 16, BORDER_REFLECT_101) and the result is rounded half to
  even as np.round; otherwise G is the float Gaussian and nothing is rounded.

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
  if ksize < 1 or ksize % 2 != 1:
    raise ValueError(f"unsharp: ksize must be a positive odd size, got {ksize}.")
  if sigma <= 0:
    raise ValueError(f"unsharp: sigma must be > 0, got {sigma}.")
  x = _as_images(images, "unsharp")
  r = ksize // 2
  if quantize:
    u = to_levels(x).astype(jnp.int32)
    blurred = (_separable(u, _gaussian_kernel_fixed(ksize, sigma), r) + (1 << 15)) >> 16
    u, blurred = u.astype(jnp.float32), blurred.astype(jnp.float32)
    sharp = jnp.round(jnp.clip((amount + 1.0) * u - amount * blurred, 0.0, 255.0))
  else:
    u = jnp.clip(x, 0.0, 1.0)
    kernel = [float(v) for v in _gaussian_kernel(ksize, sigma).astype(np.float32)]
    blurred = _separable(u, kernel, r)
    sharp = jnp.clip((amount + 1.0) * u - amount * blurred, 0.0, 1.0)
    threshold = threshold / 255.0
  if threshold > 0:
    sharp = jnp.where(jnp.abs(u - blurred) < threshold, u, sharp)
  return _from_levels(sharp) if quantize else sharp


# Pipeline.

STAGES: Mapping[str, Callable[..., Array]] = {
    "enhance": enhance,
    "dehaze": dehaze,
    "bilateral": bilateral,
    "unsharp": unsharp,
}

# The report's chain; every stage's defaults are the report's parameters.
PRESETS: Mapping[str, tuple[str, ...]] = {
    "report": ("enhance", "dehaze", "bilateral", "unsharp"),
}


def parse_spec(spec: str | Sequence[str] | None) -> tuple[str, ...]:
  """Stage names of a spec: a preset, comma-separated stage or preset names, or ""/"none"/None."""
  if spec is None:
    return ()
  tokens = spec.split(",") if isinstance(spec, str) else list(spec)
  tokens = [t.strip() for t in tokens]
  if tokens in ([""], ["none"]):
    return ()
  names = []
  for token in tokens:
    if token in PRESETS:
      names.extend(PRESETS[token])
    elif token in STAGES:
      names.append(token)
    else:
      raise ValueError(f"Unknown post-processing stage {token!r} in {spec!r}; stages: "
                       f"{', '.join(STAGES)}; presets: {', '.join(PRESETS)}; or '' / 'none'.")
  return tuple(names)


def _stage_params(params: Params | None) -> dict[str, dict[str, Any]]:
  """Validates {stage: {argument: value}} against the stage signatures."""
  out = {}
  for stage, kwargs in (params or {}).items():
    if stage not in STAGES:
      raise ValueError(f"Parameters for unknown post-processing stage {stage!r}; stages: "
                       f"{', '.join(STAGES)}.")
    kwargs = dict(kwargs)
    try:
      inspect.signature(STAGES[stage]).bind(None, **kwargs)
    except TypeError as e:
      raise ValueError(f"Bad parameters for post-processing stage {stage!r}: {e}.") from None
    out[stage] = kwargs
  return out


def build_pipeline(spec: str | Sequence[str] | None = "report", params: Params | None = None,
                   intermediates: bool = False) -> Callable[[Array], Any]:
  """images -> images applying the stages of `spec` in order; "" or "none" is the identity.

  Args:
    spec: see `parse_spec`, e.g. "report", "enhance,unsharp", "none".
    params: per-stage keyword overrides, e.g. {"dehaze": {"variant": "he2011"}}; stages that
      are not in the spec may be given (so a config can set them all), unknown ones may not.
    intermediates: return the tuple of every stage's output instead of the last.

  Returns:
    A pure function of [B, H, W, C] images in [0, 1], to be jitted or vmapped by the caller.
  """
  names = parse_spec(spec)
  kwargs = _stage_params(params)
  stages = [functools.partial(STAGES[n], **kwargs.get(n, {})) for n in names]

  def pipeline(images: Array) -> Any:
    images = jnp.asarray(images, jnp.float32)
    outputs = []
    for stage in stages:
      images = stage(images)
      outputs.append(images)
    return tuple(outputs) if intermediates else images

  return pipeline


def run_stages(images: Array, spec: str | Sequence[str] | None = "report",
               params: Params | None = None) -> list[tuple[str, Array]]:
  """[(stage name, images after that stage), ...] of the chain, e.g. for a per-stage figure."""
  outputs = build_pipeline(spec, params, intermediates=True)(images)
  return list(zip(parse_spec(spec), outputs))
