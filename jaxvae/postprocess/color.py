"""PIL's ImageEnhance.Color then ImageEnhance.Contrast, batched, in PIL's integer arithmetic."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxvae.postprocess import levels as lv

Array = jax.Array

# ITU-R 601-2 luma in PIL's 16-bit fixed point: round(2**16 * (0.299, 0.587, 0.114)).
_PIL_LUMA = (19595, 38470, 7471)
LUMA = (0.299, 0.587, 0.114)


@jax.jit
def _pil_luma(u: lv.Planes) -> Array:
  """PIL's RGB -> L on int32 level planes: (19595 R + 38470 G + 7471 B + 2**15) >> 16."""
  r, g, b = _PIL_LUMA
  return jnp.right_shift(u[0] * r + u[1] * g + u[2] * b + 0x8000, 16)


def _pil_blend(degenerate: Array, image: Array, alpha: float) -> Array:
  """PIL's Image.blend on int32 levels: trunc(clip(f32(d) + f32(f32(alpha) (i - d)), 0, 255)).

  PIL rounds the product to float32 before the sum. XLA on CPU contracts a * b + c into one FMA
  (one rounding), which moves sums that land on an integer (127 + 2.2 * -55 gives 5.9999974, not
  6), and lax.optimization_barrier does not stop it. So unless every product is exact in float32
  (alpha = 1.5, 2 or 3: the FMA then changes nothing), the 511 possible products of a Python
  alpha come from a float32 table. A traced alpha multiplies and may be 1 level off PIL.
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


def _is_one(factor) -> bool:
  """Whether a factor is exactly 1, where PIL's blend returns a copy of the image."""
  return isinstance(factor, (int, float)) and factor == 1.0


def enhance_levels(planes: lv.Planes, saturation: float = 2.0,
                   contrast: float = 3.0) -> lv.Planes:
  """PIL ImageEnhance.Color(saturation) then Contrast(contrast) on R, G, B int32 level planes.

  Color:    y = blend(L(x), x, s),  L = PIL's integer ITU-R 601 luma.
  Contrast: z = blend(m, y, c),     m = int(mean(L(y)) + 0.5), the mean luma of each image.
  blend(d, x, a) = d + a (x - d) in float32, clipped to [0, 255] and truncated (PIL's
  ImagingBlend). A factor of exactly 1 keeps the image, as PIL's blend returns a copy there.
  """
  u = tuple(planes)
  if not _is_one(saturation):
    luma = _pil_luma(u)
    u = lv.fence(*(_pil_blend(luma, c, saturation) for c in u))
  if not _is_one(contrast):
    n = u[0].shape[1] * u[0].shape[2]
    total = lv.reduce_image(_pil_luma(u), jnp.add, 0)  # int32: exact below 2**31 / 255 pixels.
    mean = ((2 * total + n) // (2 * n))[:, None, None]  # int(total / n + 0.5), as PIL.
    u = lv.output(*(_pil_blend(mean, c, contrast) for c in u))
  return u


def enhance(images: Array, saturation: float = 2.0, contrast: float = 3.0,
            quantize: bool = True) -> Array:
  """PIL ImageEnhance.Color(saturation) then ImageEnhance.Contrast(contrast), batched.

  Color:    y = blend(L(x), x, s),  L = ITU-R 601-2 luma image.
  Contrast: z = blend(m, y, c),     m = int(mean(L(y)) + 0.5), the mean luma of each image.
  blend(d, x, a) = d + a (x - d), clipped to [0, 255].

  With `quantize` (uint8-faithful, the default) the input is rounded to 8-bit levels and every
  step is PIL's integer arithmetic (`enhance_levels`); the output is a multiple of 1/255.
  Without it the same formulas run on floats (L = 0.299 R + 0.587 G + 0.114 B, m = mean luma,
  clipped to [0, 1]).

  Args:
    images: [B, H, W, 3] RGB in [0, 1].
    saturation: PIL Color factor; 1 keeps the image.
    contrast: PIL Contrast factor; 1 keeps the image.
    quantize: uint8-faithful PIL arithmetic.

  Returns:
    [B, H, W, 3] float32 in [0, 1].
  """
  x = lv.as_images(images, "enhance", channels=3)
  if not quantize:
    luma = jnp.asarray(LUMA, jnp.float32)
    # (1 - a) d + a x rather than d + a (x - d): factor 1 then returns x exactly.
    lum = (x @ luma)[..., None]
    y = jnp.clip((1.0 - saturation) * lum + saturation * x, 0.0, 1.0)
    mean = jnp.mean(y @ luma, axis=(1, 2))[:, None, None, None]
    return jnp.clip((1.0 - contrast) * mean + contrast * y, 0.0, 1.0)
  return lv.on_levels(enhance_levels, x, saturation, contrast)
