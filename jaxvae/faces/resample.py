"""torch's `interpolate(mode="area")` (adaptive average pooling) from one integral image, in numpy.

facenet-pytorch resizes the image pyramid and the R-Net/O-Net crops with
`imresample = interpolate(img, size, mode="area")`, which is `adaptive_avg_pool2d`: output cell
i of n_out along an axis of n_in pixels averages the input pixels
[floor(i * n_in / n_out), ceil((i + 1) * n_in / n_out)). Every such box average is read from one
integral image as S[r1, c1] - S[r0, c1] - S[r1, c0] + S[r0, c0], divided by the box's pixel
count: the same average as torch's (sums of uint8 values are exact; torch sums in float32).
The integral image is kept modulo 2^32 (uint32): every box sum is far below 2^32, so the
wrapped differences are exact for images of any size.
"""

import numpy as np


def integral_image(rgb: np.ndarray) -> np.ndarray:
  """uint8 [H, W, C] -> uint32 [H + 1, W + 1, C], S[r, c] = sum of rgb[:r, :c] (mod 2^32)."""
  h, w, c = rgb.shape
  out = np.zeros((h + 1, w + 1, c), np.uint32)
  for r in range(h):  # A loop over rows: ~20x faster than numpy's cumsum along axis 0 here.
    np.add(out[r, 1:], rgb[r], out=out[r + 1, 1:])
  np.cumsum(out[1:, 1:], axis=1, out=out[1:, 1:])
  return out


def pool_bounds(start: np.ndarray, length: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
  """Input index ranges [lo, hi) of `size` adaptive-pool cells over [start, start + length).

  `start`, `length`: int arrays [N]; returns two int arrays [N, size].
  """
  i = np.arange(size)
  length = np.asarray(length)[:, None]
  lo = (i * length) // size
  hi = ((i + 1) * length + size - 1) // size
  return np.asarray(start)[:, None] + lo, np.asarray(start)[:, None] + hi


def box_means(integral: np.ndarray, rows: tuple[np.ndarray, np.ndarray],
              cols: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
  """Means of the boxes rows[0][n, i]:rows[1][n, i] x cols[0][n, j]:cols[1][n, j]: [N, I, J, C]."""
  r0, r1 = rows[0][:, :, None], rows[1][:, :, None]
  c0, c1 = cols[0][:, None, :], cols[1][:, None, :]
  sums = integral[r1, c1] - integral[r0, c1] - integral[r1, c0] + integral[r0, c0]
  count = ((r1 - r0) * (c1 - c0))[..., None]
  return (sums / count).astype(np.float32)


def resize_area(integral: np.ndarray, height: int, width: int) -> np.ndarray:
  """The whole image resized to [height, width, C] as torch's interpolate(mode="area")."""
  h, w = integral.shape[0] - 1, integral.shape[1] - 1
  rows = pool_bounds(np.zeros(1, int), np.array([h]), height)
  cols = pool_bounds(np.zeros(1, int), np.array([w]), width)
  return box_means(integral, rows, cols)[0]


def crops_area(integral: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
  """Crops [x0, y0, x1, y1) (int [N, 4], inside the image) resized to size x size: [N, s, s, C]."""
  rows = pool_bounds(boxes[:, 1], boxes[:, 3] - boxes[:, 1], size)
  cols = pool_bounds(boxes[:, 0], boxes[:, 2] - boxes[:, 0], size)
  return box_means(integral, rows, cols)
