"""CelebA's face alignment (`align_face_celeba`, MATLAB) into its 178x218 frame, in numpy.

The MATLAB function fits
  t = cp2tform([eye_l; eye_r; mean(mouth_l, mouth_r)], pos_align, 'nonreflective similarity')
with pos_align = (70.745, 112), (108.237, 112), (89.432, 153.514) in MATLAB's 1-based pixel
coordinates, then samples imtransform(img, t, makeresampler({'cubic', 'nearest'}, 'replicate'),
'XData', [1 178], 'YData', [1 218]).

The transform class is a non-reflective similarity (rotation, uniform scale, translation: 4
parameters), fitted to the 3 point pairs (6 equations) by linear least squares. As in MATLAB's
cp2tform, the fit is of the inverse map, aligned -> photo,
  u = a x + b y + c,  v = -b x + a y + d,
minimizing sum_i |(u, v)(pos_align_i) - landmark_i|^2 in photo pixels; the forward map is its
matrix inverse. imtransform samples each output pixel at that inverse map with Keys' cubic
convolution kernel (a = -0.5), taps outside the photo replicated from its border, and rounds to
uint8 (half away from zero, saturated).

Landmarks here are 0-based pixel-centre coordinates (pixel [r, c] is at x = c, y = r), as
jaxvae.faces.detect returns them; MATLAB's 1-based coordinates are these plus 1.
"""

import numpy as np

from jaxvae.celeba import CELEBA_SIZE

CELEBA_POINTS = np.array([[70.745, 112.0], [108.237, 112.0], [89.432, 153.514]])  # 1-based


def fit_similarity(moving: np.ndarray, fixed: np.ndarray) -> np.ndarray:
  """MATLAB cp2tform(moving, fixed, 'nonreflective similarity').tdata.Tinv, as a [3, 3] matrix.

  Row-vector convention as MATLAB's: [u, v, 1] = [x, y, 1] @ Tinv maps `fixed` points (x, y)
  to `moving` points (u, v); Tinv = [[a, -b, 0], [b, a, 0], [c, d, 1]] is the least-squares
  solution of [x, y, 1, 0] . (a, b, c, d) = u and [y, -x, 0, 1] . (a, b, c, d) = v.
  """
  moving, fixed = np.asarray(moving, np.float64), np.asarray(fixed, np.float64)
  x, y = fixed[:, 0], fixed[:, 1]
  one, zero = np.ones_like(x), np.zeros_like(x)
  design = np.concatenate([np.stack([x, y, one, zero], 1), np.stack([y, -x, zero, one], 1)])
  if np.linalg.matrix_rank(design) < 4:
    raise ValueError("cp2tform: at least two distinct points are needed")
  a, b, c, d = np.linalg.lstsq(design, np.concatenate([moving[:, 0], moving[:, 1]]),
                               rcond=None)[0]
  return np.array([[a, -b, 0.0], [b, a, 0.0], [c, d, 1.0]])


def celeba_inverse_map(landmarks: np.ndarray) -> np.ndarray:
  """[3, 3] M with [x, y, 1] @ M = photo point (0-based) of aligned pixel (x, y) (0-based)."""
  landmarks = np.asarray(landmarks, np.float64)
  if landmarks.shape != (5, 2) or not np.isfinite(landmarks).all():
    raise ValueError(f"landmarks must be finite [5, 2] (x, y) points, got {landmarks.shape}")
  moving = np.stack([landmarks[0], landmarks[1], landmarks[3:5].mean(axis=0)]) + 1.0
  tinv = fit_similarity(moving, CELEBA_POINTS)
  shift_in = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 1]], np.float64)  # 0-based -> 1-based
  shift_out = np.array([[1, 0, 0], [0, 1, 0], [-1, -1, 1]], np.float64)  # 1-based -> 0-based
  return shift_in @ tinv @ shift_out


def keys_cubic(t: np.ndarray) -> np.ndarray:
  """Keys' cubic convolution kernel with a = -0.5 (MATLAB's 'cubic')."""
  t = np.abs(t)
  return np.where(t <= 1, 1.5 * t**3 - 2.5 * t**2 + 1,
                  np.where(t <= 2, -0.5 * t**3 + 2.5 * t**2 - 4 * t + 2, 0.0))


def warp_cubic(rgb: np.ndarray, inverse_map: np.ndarray, width: int, height: int,
               origin: tuple[int, int] = (0, 0)) -> np.ndarray:
  """uint8 [height, width, C]: pixel (x, y) sampled at [x + ox, y + oy, 1] @ inverse_map of `rgb`.

  Cubic convolution over the 4 x 4 nearest pixels, indices clamped to the image (MATLAB's
  'replicate' padding); result rounded half away from zero and saturated to uint8. `origin`
  (ox, oy) renders only a window of the output frame.
  """
  ys, xs = np.mgrid[origin[1]:origin[1] + height, origin[0]:origin[0] + width].astype(np.float64)
  u = xs * inverse_map[0, 0] + ys * inverse_map[1, 0] + inverse_map[2, 0]
  v = xs * inverse_map[0, 1] + ys * inverse_map[1, 1] + inverse_map[2, 1]
  u0, v0 = np.floor(u), np.floor(v)
  taps = np.arange(-1, 3)
  cols = np.clip(u0[..., None] + taps, 0, rgb.shape[1] - 1).astype(np.int64)  # [H, W, 4]
  rows = np.clip(v0[..., None] + taps, 0, rgb.shape[0] - 1).astype(np.int64)
  wu = keys_cubic(u[..., None] - (u0[..., None] + taps))  # [H, W, 4]
  wv = keys_cubic(v[..., None] - (v0[..., None] + taps))
  pixels = rgb[rows[..., :, None], cols[..., None, :]].astype(np.float64)  # [H, W, 4, 4, C]
  out = np.einsum("hwi,hwj,hwijc->hwc", wv, wu, pixels)
  return np.clip(np.floor(out + 0.5), 0, 255).astype(np.uint8)


def align_celeba(rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
  """The photo aligned as CelebA's img_align_celeba: uint8 [218, 178, 3]."""
  if rgb.ndim != 3 or rgb.dtype != np.uint8:
    raise ValueError(f"align_celeba expects a uint8 image [H, W, C], got {rgb.dtype} "
                     f"{tuple(rgb.shape)}")
  return warp_cubic(rgb, celeba_inverse_map(landmarks), *CELEBA_SIZE)
