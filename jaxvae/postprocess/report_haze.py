"""The report's dehaze_image and the uint8 truncation after it, operation for operation."""

import contextlib
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxvae.postprocess import levels as lv

Array = jax.Array
Planes = lv.Planes


def num_brightest(num_pixels: int, top_fraction: float) -> int:
  """The report's max(1, int(H W top_fraction)); 0.1% of 64 x 64 is 4 pixels."""
  return max(1, int(num_pixels * top_fraction))


@functools.partial(jax.jit, static_argnums=1)
def top_pixels(values: Array, n: int) -> list[Array]:
  """Flat indices of the n largest values of each image [B, H, W], largest first, ties to the
  lowest index: what np.argsort(-row, kind="stable")[:n] selects, in its order; n x [B].

  Each pick is the largest (value, -index) below the previous pick. Integer values in [0, 2**16)
  (8-bit levels) fold both into one key, value 2**15 + (2**15 - 1 - index): each pick is a max.
  """
  b, h, w = values.shape
  position = jnp.arange(h * w, dtype=jnp.int32).reshape(1, h, w)
  low = jnp.iinfo(jnp.int32).min
  picked = []
  if jnp.issubdtype(values.dtype, jnp.integer) and h * w <= 1 << 15:
    (keys,) = lv.fence(values.astype(jnp.int32) * (1 << 15) + ((1 << 15) - 1 - position))
    best = None
    for _ in range(n):
      below = keys if best is None else jnp.where(keys < best[:, None, None], keys, low)
      best = lv.reduce_image(below, jnp.maximum, low)
      picked.append((1 << 15) - 1 - (best & ((1 << 15) - 1)))
    return picked
  floating = jnp.issubdtype(values.dtype, jnp.floating)
  bottom = -jnp.inf if floating else jnp.iinfo(values.dtype).min
  best, index = None, None
  for _ in range(n):
    if best is None:
      allowed = jnp.ones(values.shape, bool)
    else:
      v, i = best[:, None, None], index[:, None, None]
      allowed = (values < v) | ((values == v) & (position > i))
    best = lv.reduce_image(jnp.where(allowed, values, bottom), jnp.maximum, bottom)
    index = lv.reduce_image(jnp.where(allowed & (values == best[:, None, None]), position, h * w),
                            jnp.minimum, h * w)
    picked.append(index)
  return picked


# numpy's u8 / 255: float64, correctly rounded.
_X64 = np.arange(256) / 255


def _values(planes: Planes) -> Planes:
  """The report's float image: integer levels / 255 in float64, or the float planes."""
  if jnp.issubdtype(planes[0].dtype, jnp.integer):
    return tuple(lv.lookup(_X64, p) for p in planes)
  return planes


def _light(planes: Planes, picked: list[Array]) -> list[Array]:
  """A: the mean colour of the picked pixels, summed in numpy's order; C x [B]."""
  light = []
  for channel in planes:
    flat = channel.reshape(channel.shape[0], -1)
    pixels = _values(tuple(jnp.take_along_axis(flat, i[:, None], axis=1)[:, 0] for i in picked))
    total = functools.reduce(jnp.add, pixels)  # ((p0 + p1) + p2) + ...: numpy's axis-0 sum.
    light.append(jnp.maximum(lv.divide(total, len(picked)), 1e-6))
  return light


def _transmission(dark: Array, omega: float, t0: float) -> Array:
  """max(1 - omega dark + 0.25, t0), each operation rounded on its own, left to right.

  XLA:CPU contracts a product and the sum that reads it into one fused multiply-add
  (1 - 0.95 d rounds once where numpy rounds twice: ~40% of float64 values differ) and folds
  constants across operations ((1 - p) + 0.25 becomes 1.25 - p); a select does not stop LLVM
  from contracting. Intermediates computed into memory (`fence`) stop both.
  """
  (haze,) = lv.fence(omega * dark)
  (clear,) = lv.fence(1.0 - haze)
  return jnp.maximum(clear + 0.25, t0)


def _transmission_of_minima(mins: Planes, light: list[Array], omega: float,
                            t0: float) -> Array:
  """t = max(1 - omega dark(x / A) + 0.25, t0) from each channel's window minima m_c of x.

  Division by A_c > 0 is monotone, so dark(x / A) = min_c fl(m_c / A_c), and t decreases with
  it: t = max_c t(fl(m_c / A_c)). For integer levels that is a lookup in per-image tables of the
  256 levels.
  """
  if not jnp.issubdtype(mins[0].dtype, jnp.integer):
    dark = functools.reduce(jnp.minimum, [lv.divide(m, a[:, None, None])
                                          for m, a in zip(mins, light)])
    return _transmission(dark, omega, t0)
  offset = (256 * jnp.arange(mins[0].shape[0], dtype=jnp.int32))[:, None, None]
  t = []
  for m, a in zip(mins, light):
    table = _transmission(lv.divide(jnp.asarray(_X64)[None, :], a[:, None]), omega, t0)
    t.append(table.reshape(-1).at[jnp.clip(m, 0, 255) + offset].get(mode="promise_in_bounds"))
  return functools.reduce(jnp.maximum, t)


@functools.partial(jax.jit, static_argnames=("window", "omega", "t0", "top_fraction"))
def dehaze_levels(planes: Planes, window: int = 15, omega: float = 0.95, t0: float = 0.1,
                  top_fraction: float = 0.001) -> Planes:
  """The report's dehaze_image(x) then (J * 255).astype(np.uint8), as int32 level planes.

  x is `planes` / 255 in float64 for integer levels (the report's e / 255 after enhance or
  trunc), else the float planes themselves, computed in their dtype (the notebook's generations
  dehaze the float32 reconstruction). Each operation rounds as numpy's does, in its order:

    dark(y) = min over RGB and the window x window square (edge padded) of y;
    A = mean colour of the n = max(1, int(H W top_fraction)) pixels that
        np.argsort(-dark(x), kind="stable")[:n] picks (among ties the LOWEST raster indices;
        the report's default quicksort leaves their order to the platform), summed in that order;
    t = max(1 - omega dark(x / A) + 0.25, t0);  J = (x - A) / t + A;  J = J / max(J);
    out = trunc(J * 255).

  The window minima run once per channel, on the input (see `_transmission_of_minima`). XLA's
  rewrites that change roundings are kept out (see `levels.divide`, `_transmission`). Guards
  the report lacks, active only where it divides by zero: A >= 1e-6 per channel, J / max(J)
  only where max(J) > 0 (J / 1 elsewhere).
  """
  if window < 1 or window % 2 != 1:
    raise ValueError(f"dehaze: window must be a positive odd size, got {window}.")
  _, h, w = planes[0].shape
  mins = [lv.window_min(p, window) for p in planes]
  picked = top_pixels(functools.reduce(jnp.minimum, mins), num_brightest(h * w, top_fraction))
  # Only float64 arithmetic runs with x64 on: lowering rules that read the flag (argmax's index
  # type) would see it off again when the enclosing function is lowered.
  with jax.enable_x64(True) if jnp.issubdtype(planes[0].dtype, jnp.integer) else (
      contextlib.nullcontext()):
    light = _light(planes, picked)
    t = _transmission_of_minima(mins, light, omega, t0)
    j = [(x - a[:, None, None]) / t + a[:, None, None] for x, a in zip(_values(planes), light)]
    peak = lv.reduce_image(functools.reduce(jnp.maximum, j), jnp.maximum, -jnp.inf)[:, None, None]
    (scale,) = lv.fence(jnp.broadcast_to(jnp.where(peak > 0, peak, 1.0), t.shape))
    out = [jnp.clip(jnp.floor(c / scale * 255.0), 0.0, 255.0).astype(jnp.int32) for c in j]
  return lv.output(*out)
