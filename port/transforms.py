"""Array transforms from torch / Keras layouts to flax layouts."""

import numpy as np


def identity(w: np.ndarray) -> np.ndarray:
  return w


def conv(w: np.ndarray) -> np.ndarray:
  """torch Conv2d weight [O, I, kh, kw] -> flax Conv kernel [kh, kw, I, O]."""
  return np.transpose(w, (2, 3, 1, 0))


def conv_transpose(w: np.ndarray) -> np.ndarray:
  """torch ConvTranspose2d weight [I, O, kh, kw] -> flax ConvTranspose(transpose_kernel=True) kernel."""
  return np.transpose(w, (2, 3, 1, 0))


def linear(w: np.ndarray) -> np.ndarray:
  """torch Linear weight [out, in] -> flax Dense kernel [in, out]."""
  return np.transpose(w)
