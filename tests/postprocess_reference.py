"""Per-image numpy/PIL/OpenCV reference of the report's post-processing for tests and benchmarks."""

import math

import cv2
import numpy as np
from PIL import Image, ImageEnhance
from skimage import data


def to_uint8(image: np.ndarray) -> np.ndarray:
  """[0, 1] float -> uint8 as round(clip(x, 0, 1) * 255), computed in float32 like the JAX side."""
  x = np.clip(np.asarray(image, np.float32), np.float32(0), np.float32(1))
  return np.round(x * np.float32(255)).astype(np.uint8)


def enhance(image: np.ndarray, saturation: float = 2.0, contrast: float = 3.0) -> np.ndarray:
  """uint8 RGB -> PIL ImageEnhance.Color(saturation) then ImageEnhance.Contrast(contrast)."""
  pil = Image.fromarray(image)
  pil = ImageEnhance.Color(pil).enhance(saturation)
  pil = ImageEnhance.Contrast(pil).enhance(contrast)
  return np.asarray(pil)


def dark_channel_padded(image: np.ndarray, window: int = 15) -> np.ndarray:
  """Min over RGB, then over a window x window patch of the edge-padded image (the definition)."""
  r = window // 2
  padded = np.pad(image.min(axis=2), r, mode="edge")
  return np.lib.stride_tricks.sliding_window_view(padded, (window, window)).min(axis=(2, 3))


def dark_channel(image: np.ndarray, window: int = 15) -> np.ndarray:
  """dark_channel_padded by cv2.erode, as in He et al.'s code and over 10x faster.

  Erosion ignores pixels outside the image (its default border value is +inf), and a minimum
  over an edge-padded window only repeats pixels already inside it: the two are equal.
  """
  kernel = np.ones((window, window), np.uint8)
  return cv2.erode(image.min(axis=2), kernel, borderType=cv2.BORDER_CONSTANT,
                   borderValue=np.inf)


def atmospheric_light(image: np.ndarray, dark: np.ndarray,
                      top_fraction: float = 0.001) -> np.ndarray:
  """Mean colour of the max(floor(h w / 1000), 1) pixels with the brightest dark channel.

  Stable argsort: among tied dark values the later pixels (raster order) are the brightest.
  """
  h, w = dark.shape
  n = max(math.floor(round(h * w * top_fraction, 9)), 1)
  indices = np.argsort(dark.reshape(h * w), kind="stable")[h * w - n:]
  return image.reshape(h * w, 3)[indices].mean(axis=0)


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
  """He et al.'s grey guided filter; means over the (2r+1)^2 window clipped to the image."""
  k = (2 * radius + 1, 2 * radius + 1)

  def mean(x):
    box = lambda y: cv2.boxFilter(y, cv2.CV_64F, k, normalize=False, borderType=cv2.BORDER_CONSTANT)
    return box(x) / box(np.ones_like(x))

  mean_i, mean_p = mean(guide), mean(src)
  a = (mean(guide * src) - mean_i * mean_p) / (mean(guide * guide) - mean_i * mean_i + eps)
  b = mean_p - a * mean_i
  return mean(a) * guide + mean(b)


def dehaze(image: np.ndarray, variant: str = "report", window: int = 15, omega: float = 0.95,
           t0: float = 0.1, top_fraction: float = 0.001, radius: int | None = None,
           eps: float = 1e-3) -> np.ndarray:
  """Float RGB in [0, 1] -> dehazed float64 in [0, 1]: the report's formula or He et al.'s.

  report: t = 1 - omega dark(I / A) + 0.25; J = (I - A) / max(t, t0) + A; J / max(J).
  he2011: t = guided_filter(grey, 1 - omega dark(I / A)); J = (I - A) / max(t, t0) + A.
  Same guards as the JAX stage: A >= 1e-6, J / max(J) only where max(J) > 0; clipped to [0, 1].
  """
  image = np.asarray(image, np.float64)
  light = np.maximum(atmospheric_light(image, dark_channel(image, window), top_fraction), 1e-6)
  t = 1 - omega * dark_channel(image / light, window)
  if variant == "report":
    t = t + 0.25
  else:
    h, w = t.shape
    grey = image @ np.array([0.299, 0.587, 0.114])
    t = guided_filter(grey, t, max(1, min(h, w) // 8) if radius is None else radius, eps)
  j = (image - light) / np.maximum(t, t0)[..., None] + light
  if variant == "report" and j.max() > 0:
    j = j / j.max()
  return np.clip(j, 0, 1)


def bilateral(image: np.ndarray, d: int = 5, sigma_color: float = 75.0,
              sigma_space: float = 75.0) -> np.ndarray:
  """cv2.bilateralFilter (uint8 in, uint8 out; float32 0-255 in, float32 out)."""
  return cv2.bilateralFilter(image, d, sigma_color, sigma_space)


def unsharp(image: np.ndarray, ksize: int = 5, sigma: float = 1.0, amount: float = 1.5,
            threshold: float = 0.0) -> np.ndarray:
  """The report's unsharp mask on uint8 (or float32 0-255): cv2.GaussianBlur, then blend.

  One fix: the low-contrast mask takes |image - blurred| in int16, where the report's uint8
  subtraction wraps around (irrelevant at its threshold 0).
  """
  blurred = cv2.GaussianBlur(image, (ksize, ksize), sigma)
  sharpened = float(amount + 1) * image - float(amount) * blurred
  sharpened = np.minimum(np.maximum(sharpened, 0), 255)
  if image.dtype == np.uint8:
    sharpened = sharpened.round().astype(np.uint8)
    diff = np.abs(image.astype(np.int16) - blurred.astype(np.int16))
  else:
    sharpened = sharpened.astype(image.dtype)
    diff = np.abs(image - blurred)
  if threshold > 0:
    np.copyto(sharpened, image, where=diff < threshold)
  return sharpened


def report_chain(image: np.ndarray, intermediates: bool = False):
  """[0, 1] float RGB -> the report's chain, [0, 1] float; optionally every stage's output."""
  enhanced = enhance(to_uint8(image))
  dehazed = dehaze(enhanced / 255.0)
  smoothed = bilateral(to_uint8(dehazed))
  final = unsharp(smoothed)
  if intermediates:
    return enhanced / 255.0, dehazed, smoothed / 255.0, final / 255.0
  return final / 255.0


def sample_images(n: int, size: int = 64, seed: int = 0) -> np.ndarray:
  """n image-like float32 [0, 1] RGB images: random crops of skimage's astronaut, lightly noised."""
  rng = np.random.default_rng(seed)
  photo = data.astronaut()
  out = np.empty((n, size, size, 3), np.float32)
  for i in range(n):
    side = int(rng.integers(size, photo.shape[0] // 2 + 1))
    top, left = rng.integers(0, photo.shape[0] - side + 1, size=2)
    crop = cv2.resize(photo[top:top + side, left:left + side], (size, size),
                      interpolation=cv2.INTER_AREA)
    out[i] = crop / 255.0 + rng.normal(0.0, 0.01, crop.shape)
  return np.clip(out, 0.0, 1.0)
