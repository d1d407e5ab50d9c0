"""Per-image numpy/PIL/OpenCV reference of the report's post-processing for tests and benchmarks."""


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
  """Mean colour of the n = max(1, int(h w top_fraction)) pixels with the brightest dark channel.

  The report's np.argsort(-dark.flatten())[:n], made stable: among tied dark values the pixels
  EARLIER in raster order are taken, in argsort's order (which fixes the sum's rounding).
  """
  h, w = dark.shape
  n = max(1, int(h * w * top_fraction))
  indices = np.argsort(-dark.reshape(h * w), kind="stable")[:n]
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
  """Float RGB in [0, 1] -> dehazed in [0, 1]: the report's formula or He et al.'s.

  Computed in the image's float dtype (float64 for integers), as numpy does for the report.

  report: t = 1 - omega dark(I / A) + 0.25; J = (I - A) / max(t, t0) + A; J / max(J).
  he2011: t = guided_filter(grey, 1 - omega dark(I / A)); J = (I - A) / max(t, t0) + A.
  Same guards as the JAX stage: A >= 1e-6, J / max(J) only where max(J) > 0; clipped to [0, 1].
  """
  image = np.asarray(image)
  if not np.issubdtype(image.dtype, np.floating):
    image = image.astype(np.float64)
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


# The report's functions.py and notebook (see MODELS.md), per image, uint8 truncation included.


def trunc(x: np.ndarray) -> np.ndarray:
  """The report's float -> uint8 conversion, (x * 255).astype(np.uint8): truncation."""
  return (x * 255).astype(np.uint8)


def smooth_image(x: np.ndarray, kernel_size: int) -> np.ndarray:
  """functions.py smooth_image(x, "bilateral", k): bilateralFilter(trunc(x), k, 75, 75) / 255."""
  return cv2.bilateralFilter(trunc(x), kernel_size, 75, 75) / 255


def unsharp_mask(x: np.ndarray, kernel_size=(5, 5), sigma: float = 1.0,
                 amount: float = 1.5) -> np.ndarray:
  """functions.py unsharp_mask: u = trunc(x); (1 + a) u - a blur(u), clipped, rounded, / 255."""
  u = trunc(x)
  blurred = cv2.GaussianBlur(u, kernel_size, sigma)
  sharpened = float(amount + 1) * u - float(amount) * blurred
  return np.round(np.clip(sharpened, 0, 255)).astype(np.uint8) / 255


def report_chain(recon: np.ndarray, intermediates: bool = False):
  """functions.py's defaults in the report's order, on a float32 reconstruction in [0, 1].

  u8 = trunc(recon); e = enhance(u8); d = trunc(dehaze(e / 255)); s = smooth(d / 255, 5);
  f = unsharp(s). Returns f in [0, 1], or (e, d, s, f) / 255 (the JAX preset's steps).
  """
  enhanced = enhance(trunc(recon))
  dehazed = trunc(dehaze(enhanced / 255))
  smoothed = smooth_image(dehazed / 255, 5)
  final = unsharp_mask(smoothed)
  return (enhanced / 255, dehazed / 255, smoothed, final) if intermediates else final


def figure1_chain(recon: np.ndarray, intermediates: bool = False):
  """The notebook's Figure 1 panels (cells 17, 19, 21) from a float32 reconstruction.

  enhanced = enhance(trunc(recon), 1.5, 1.5); dehazed = enhance(trunc(dehaze(trunc(recon) /
  255)), 1, 1); final = trunc(unsharp(smooth(dehazed / 255, 3), (5, 5), 2.0, 1.5)). Returns the
  final panel, or every step of the JAX preset (enhanced, trunc(J), dehazed, smoothed, final).
  """
  u8 = trunc(recon)
  enhanced = enhance(u8, 1.5, 1.5)
  dehazed = trunc(dehaze(u8 / 255))
  kept = enhance(dehazed, 1.0, 1.0)
  smoothed = smooth_image(kept / 255, 3)
  final = trunc(unsharp_mask(smoothed, (5, 5), 2.0, 1.5))
  if intermediates:
    return enhanced / 255, dehazed / 255, kept / 255, smoothed, final / 255
  return final / 255


def generations_chain(recon: np.ndarray, intermediates: bool = False):
  """The notebook's stochastic generations (cells 24, 26) from a float32 reconstruction.

  d = trunc(dehaze(clip(recon))) (in float32); e = enhance(d, 1, 1); s = smooth(e / 255, 3);
  f = trunc(unsharp(s, (5, 5), 1.0, 4)). Returns f / 255, or (d, e, s, f) / 255.
  """
  dehazed = trunc(dehaze(np.clip(recon, 0, 1)))
  kept = enhance(dehazed, 1.0, 1.0)
  smoothed = smooth_image(kept / 255, 3)
  final = trunc(unsharp_mask(smoothed, (5, 5), 1.0, 4.0))
  return (dehazed / 255, kept / 255, smoothed, final / 255) if intermediates else final / 255


CHAINS = {"report": report_chain, "figure1": figure1_chain, "generations": generations_chain}


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


# Public-domain face photos inside installed wheels, (top, left, side) of the face (DATA.md).
_FACES = {"astronaut": (37, 147, 149), "grace_hopper": (56, 110, 314)}


def face_photo(name: str) -> np.ndarray:
  """skimage's astronaut or matplotlib's grace_hopper, uint8 RGB."""
  if name == "astronaut":
    return data.astronaut()
  from matplotlib import cbook  # pylint: disable=import-outside-toplevel
  with cbook.get_sample_data("grace_hopper.jpg") as f:
    return np.asarray(Image.open(f).convert("RGB"))


def face_crops(n: int, size: int = 64, seed: int = 0) -> np.ndarray:
  """n square crops around the two faces at random scales (0.8 - 1.6 x the face box) and
  offsets, resized to size x size: float32 [n, size, size, 3] in [0, 1]."""
  rng = np.random.default_rng(seed)
  out = np.empty((n, size, size, 3), np.float32)
  names = sorted(_FACES)
  photos = {name: face_photo(name) for name in names}
  for i in range(n):
    name = names[i % len(names)]
    photo = photos[name]
    top, left, side = _FACES[name]
    crop = int(side * rng.uniform(0.8, 1.6))
    cy = top + side // 2 + int(rng.integers(-side // 8, side // 8 + 1))
    cx = left + side // 2 + int(rng.integers(-side // 8, side // 8 + 1))
    y0 = int(np.clip(cy - crop // 2, 0, photo.shape[0] - crop))
    x0 = int(np.clip(cx - crop // 2, 0, photo.shape[1] - crop))
    patch = photo[y0:y0 + crop, x0:x0 + crop]
    out[i] = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA) / np.float32(255)
  return out


def stress_images(size: int = 64) -> np.ndarray:
  """Synthetic [8, size, size, 3] float32 images for ties and saturation: flat grey, black,
  white, a flat dark channel under varied colours (every dark value ties; the first and last
  pixels differ), a bright plateau wider than the dehaze window, saturated stripes, a gradient,
  and uniform noise."""
  rng = np.random.default_rng(7)
  out = np.empty((8, size, size, 3), np.float32)
  out[0] = 0.5
  out[1] = 0.0
  out[2] = 1.0
  tied = 0.6 + 0.4 * rng.random((size, size, 3))
  tied[..., 0] = 0.6  # min over channels is 0.6 everywhere.
  tied[0, :4] = [[0.6, 0.9, 0.7], [0.6, 0.8, 0.95], [0.6, 1.0, 0.6], [0.6, 0.65, 0.85]]
  tied[-1, -4:] = [[0.6, 0.6, 0.6]] * 4
  out[3] = tied
  plateau = 0.3 * rng.random((size, size, 3))
  plateau[size // 3:size // 3 + 24, size // 4:size // 4 + 24] = 0.9 + 0.1 * rng.random((24, 24, 3))
  out[4] = plateau
  stripes = np.zeros((size, size, 3))
  stripes[:, ::2, 0] = 1.0
  stripes[::3, :, 1] = 1.0
  stripes[:, 1::4, 2] = 1.0
  out[5] = stripes
  ramp = np.linspace(0.0, 1.0, size)
  out[6] = np.stack([ramp[:, None] * np.ones(size), np.ones(size)[:, None] * ramp,
                     0.5 * (ramp[:, None] + ramp)], axis=-1)
  out[7] = rng.random((size, size, 3))
  return out
