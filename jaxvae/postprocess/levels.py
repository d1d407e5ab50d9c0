"""8-bit levels, channel planes, and the XLA:CPU controls that keep the stages exact and fast."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

Array = jax.Array
Planes = tuple[Array, ...]  # One [B, H, W] array per channel.

# l / 255 in float32 for every 8-bit level l, correctly rounded (numpy's float32 division).
LEVEL_VALUES = np.arange(256, dtype=np.float32) / np.float32(255)


def as_images(images: Array, stage: str, channels: int | None = None) -> Array:
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


def trunc_levels(images: Array) -> Array:
  """The report's `(x * 255).astype(np.uint8)` of float32 images, as int32 levels.

  The float32 product truncated toward zero. Outside [0, 1], where numpy's uint8 cast wraps
  around or is undefined, the levels are clipped to [0, 255].
  """
  levels = jnp.floor(jnp.asarray(images, jnp.float32) * 255.0)
  return jnp.clip(levels, 0.0, 255.0).astype(jnp.int32)


def from_levels(levels: Array) -> Array:
  """Integer levels in [0, 255] -> levels / 255 in float32, as numpy's u8 / np.float32(255).

  A table lookup: XLA turns a division by the constant 255 into a product with 1 / 255, which
  is 1 ulp off for most levels.
  """
  return lookup(LEVEL_VALUES, levels)


def lookup(table: np.ndarray, levels: Array) -> Array:
  """table[clip(levels, 0, len(table) - 1)]: a gather XLA:CPU runs twice as fast unclamped."""
  index = jnp.clip(levels.astype(jnp.int32), 0, table.shape[0] - 1)
  return jnp.asarray(table).at[index].get(mode="promise_in_bounds")


def split(images: Array) -> Planes:
  """[B, H, W, C] -> C planes [B, H, W]: XLA:CPU vectorises planes, not interleaved channels."""
  return tuple(images[..., c] for c in range(images.shape[-1]))


def merge(planes: Planes) -> Array:
  """C planes [B, H, W] -> [B, H, W, C]."""
  return jnp.stack(planes, axis=-1)


def on_levels(level_fn, x: Array, *args) -> Array:
  """A stage on integer levels applied to float images: x -> levels -> planes -> level_fn ->
  images (the report's uint8 conversions around a stage)."""
  planes = fence(*split(to_levels(x).astype(jnp.int32)))
  return from_levels(merge(level_fn(planes, *args)))


def _top(dtype) -> Array:
  """The largest value of a dtype (+inf for floats): the identity of min."""
  if jnp.issubdtype(dtype, jnp.floating):
    return jnp.asarray(jnp.inf, dtype)
  return jnp.asarray(jnp.iinfo(dtype).max, dtype)


def _min_pairs(x: Array, axis: int, step: int) -> Array:
  """min(x[i], x[i + step]) along `axis`, the identity of min past the end."""
  ones = (1,) * x.ndim
  window = tuple(2 if a == axis else 1 for a in range(x.ndim))
  dilation = tuple(step if a == axis else 1 for a in range(x.ndim))
  pad = tuple((0, step) if a == axis else (0, 0) for a in range(x.ndim))
  return lax.reduce_window(x, _top(x.dtype), lax.min, window, ones, pad,
                           window_dilation=dilation)


@jax.jit
def fence(*arrays: Array) -> tuple[Array, ...]:
  """`arrays` unchanged, each computed once into memory before any of its uses.

  XLA:CPU fuses an elementwise producer into every consumer and recomputes it there: a bilateral
  tap weight that 8 sums read would be computed 8 times. Neither an optimization barrier (XLA
  removes it before fusion) nor a copy stops that; a reduce-window does, as XLA never fuses one
  into its users. This one is the identity: along the last axis, the min of each element and of
  the padding (the identity of min) one axis length further on.
  """
  return tuple(_min_pairs(x, x.ndim - 1, x.shape[-1]) for x in arrays)


def output(*planes: Array) -> tuple[Array, ...]:
  """A stage's output planes, fenced: the next stage reads each pixel's neighbourhood."""
  return fence(*planes)


def divide(x: Array, y: Array) -> Array:
  """x / y rounded once, as numpy's true_divide, for x and y that broadcast together.

  XLA rewrites a division by a broadcast (or constant) value into a product with its
  reciprocal, which rounds twice (1 ulp off in about a third of float64 quotients), and an
  optimization barrier does not stop it; a divisor computed into memory by `fence` does.
  """
  y = jnp.asarray(y, x.dtype)
  shape = jnp.broadcast_shapes(x.shape, y.shape)
  return jnp.broadcast_to(x, shape) / fence(jnp.broadcast_to(y, shape))[0]


def reflect101(x: Array, ry: int, rx: int) -> Array:
  """Pads H and W of [B, H, W, ...] like OpenCV's BORDER_REFLECT_101 (numpy's 'reflect')."""
  pad = [(0, 0), (ry, ry), (rx, rx)] + [(0, 0)] * (x.ndim - 3)
  return jnp.pad(x, pad, mode="reflect")


@functools.partial(jax.jit, static_argnums=(1, 2))
def reduce_image(x: Array, op, identity) -> Array:
  """op (max, min, add) over H and W of [B, H, W] -> [B], by halving each axis in turn.

  Trees of elementwise ops on halves, which XLA:CPU fuses; the rows' tree is computed into memory
  first, so that its loop runs over columns and vectorises. XLA's own reduce ops over an image
  run 3-5 times slower here. Exact for max and min, and for integer sums.
  """
  for axis in (1, 2):
    size = x.shape[axis]
    full = 1 << (size - 1).bit_length()
    if full > size:
      pad = [(0, 0)] * x.ndim
      pad[axis] = (0, full - size)
      x = jnp.pad(x, pad, constant_values=identity)
    while x.shape[axis] > 1:
      half = x.shape[axis] // 2
      x = op(lax.slice_in_dim(x, 0, half, axis=axis),
             lax.slice_in_dim(x, half, 2 * half, axis=axis))
    if axis == 1:
      (x,) = fence(x)
  return x[:, 0, 0]


@functools.partial(jax.jit, static_argnums=1)
def window_min(x: Array, window: int) -> Array:
  """Min over a window x window square of [B, H, W], clipped to the image (= edge padded).

  Per axis, minima of 2, 4, 8, ... elements, each the min of two shifted minima of the step
  before (4 steps for 15 instead of 14 comparisons).
  """
  r = window // 2
  for axis in (1, 2):
    size = x.shape[axis]
    x = jnp.concatenate([jnp.full(x.shape[:axis] + (r,) + x.shape[axis + 1:], _top(x.dtype)), x],
                        axis=axis)
    covered = 1  # x[i] is the min of the covered elements from i on.
    while covered < window:
      step = min(covered, window - covered)
      x = _min_pairs(x, axis, step)
      covered += step
    x = lax.slice_in_dim(x, 0, size, axis=axis)
  return x
