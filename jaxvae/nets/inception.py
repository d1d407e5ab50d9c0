"""The FID Inception-v3 of pytorch-fid (TensorFlow's 2015-12-05 graph) in flax: pool3 features.

pytorch-fid's `InceptionV3([3])` on [0, 1] images: bilinear resize to 299x299 (torch's
align_corners=False), x -> 2x - 1, the network up to the final average pooling -> [N, 2048].
Its FID blocks differ from torchvision's Inception-v3: average pooling inside the blocks ignores
the padded zeros, and the last block (Mixed_7c) max-pools. Every BatchNorm has eps 0.001.

The weights are the published `pt_inception-2015-12-05-6726825d.pth` (`PUBLISHED_NAME`), ported
once by the port tool into the cache (`jaxvae.weights.load_aux`); offline, put that file in a
folder named by $JAXVAE_MIRROR. Convolutions run at HIGHEST precision (no TF32 on GPUs).
"""

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxvae import weights

KIND = "inception"
PUBLISHED_NAME = "inception-fid"
FEATURE_DIM = 2048
INPUT_SIZE = 299
BN_EPS = 1e-3
DEFAULT_BATCH_SIZE = 50  # pytorch-fid's default.
_HIGHEST = jax.lax.Precision.HIGHEST


def resize_matrix(in_size: int, out_size: int) -> np.ndarray:
  """[out, in] weights of torch's bilinear interpolation along one axis, align_corners=False.

  Output index o samples the input at s = max((o + 0.5) * in / out - 0.5, 0), between
  i = floor(s) and min(i + 1, in - 1) with weights (1 - (s - i), s - i).
  """
  src = np.maximum((np.arange(out_size) + 0.5) * (in_size / out_size) - 0.5, 0.0)
  lo = np.floor(src).astype(np.int64)
  hi = np.minimum(lo + 1, in_size - 1)
  frac = src - lo
  m = np.zeros((out_size, in_size), np.float64)
  np.add.at(m, (np.arange(out_size), lo), 1.0 - frac)
  np.add.at(m, (np.arange(out_size), hi), frac)
  return m.astype(np.float32)


def resize_bilinear(x: jax.Array, size: int = INPUT_SIZE) -> jax.Array:
  """F.interpolate(x, (size, size), mode="bilinear", align_corners=False) on [N, H, W, C]."""
  x = jnp.einsum("nhwc,vw->nhvc", x, resize_matrix(x.shape[2], size), precision=_HIGHEST)
  return jnp.einsum("nhwc,uh->nuwc", x, resize_matrix(x.shape[1], size), precision=_HIGHEST)


class BasicConv(nn.Module):
  """torchvision's BasicConv2d: Conv2d(bias=False) -> BatchNorm2d(eps=0.001) -> ReLU."""
  features: int
  kernel: tuple[int, int]
  stride: int = 1
  padding: tuple[int, int] = (0, 0)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    (ph, pw) = self.padding
    x = nn.Conv(self.features, self.kernel, strides=(self.stride, self.stride),
                padding=((ph, ph), (pw, pw)), use_bias=False, precision=_HIGHEST, name="conv")(x)
    x = nn.BatchNorm(use_running_average=True, epsilon=BN_EPS, name="bn")(x)
    return nn.relu(x)


def _tf_avg_pool(x: jax.Array) -> jax.Array:
  """3x3 stride-1 average pool over the valid pixels only (count_include_pad=False)."""
  return nn.avg_pool(x, (3, 3), (1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_s2(x: jax.Array) -> jax.Array:
  return nn.max_pool(x, (3, 3), (2, 2), padding="VALID")


class InceptionA(nn.Module):
  """pytorch-fid's FIDInceptionA (Mixed_5b/c/d)."""
  pool_features: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    b1 = BasicConv(64, (1, 1), name="branch1x1")(x)
    b5 = BasicConv(48, (1, 1), name="branch5x5_1")(x)
    b5 = BasicConv(64, (5, 5), padding=(2, 2), name="branch5x5_2")(b5)
    b3 = BasicConv(64, (1, 1), name="branch3x3dbl_1")(x)
    b3 = BasicConv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(b3)
    b3 = BasicConv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_3")(b3)
    bp = BasicConv(self.pool_features, (1, 1), name="branch_pool")(_tf_avg_pool(x))
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
  """torchvision's InceptionB (Mixed_6a): 35x35 -> 17x17."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    b3 = BasicConv(384, (3, 3), stride=2, name="branch3x3")(x)
    bd = BasicConv(64, (1, 1), name="branch3x3dbl_1")(x)
    bd = BasicConv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
    bd = BasicConv(96, (3, 3), stride=2, name="branch3x3dbl_3")(bd)
    return jnp.concatenate([b3, bd, _max_pool_s2(x)], axis=-1)


class InceptionC(nn.Module):
  """pytorch-fid's FIDInceptionC (Mixed_6b..e): factorized 7x7 convolutions."""
  channels_7x7: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c7 = self.channels_7x7
    b1 = BasicConv(192, (1, 1), name="branch1x1")(x)
    b7 = BasicConv(c7, (1, 1), name="branch7x7_1")(x)
    b7 = BasicConv(c7, (1, 7), padding=(0, 3), name="branch7x7_2")(b7)
    b7 = BasicConv(192, (7, 1), padding=(3, 0), name="branch7x7_3")(b7)
    bd = BasicConv(c7, (1, 1), name="branch7x7dbl_1")(x)
    bd = BasicConv(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_2")(bd)
    bd = BasicConv(c7, (1, 7), padding=(0, 3), name="branch7x7dbl_3")(bd)
    bd = BasicConv(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_4")(bd)
    bd = BasicConv(192, (1, 7), padding=(0, 3), name="branch7x7dbl_5")(bd)
    bp = BasicConv(192, (1, 1), name="branch_pool")(_tf_avg_pool(x))
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
  """torchvision's InceptionD (Mixed_7a): 17x17 -> 8x8."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    b3 = BasicConv(192, (1, 1), name="branch3x3_1")(x)
    b3 = BasicConv(320, (3, 3), stride=2, name="branch3x3_2")(b3)
    b7 = BasicConv(192, (1, 1), name="branch7x7x3_1")(x)
    b7 = BasicConv(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
    b7 = BasicConv(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
    b7 = BasicConv(192, (3, 3), stride=2, name="branch7x7x3_4")(b7)
    return jnp.concatenate([b3, b7, _max_pool_s2(x)], axis=-1)


class InceptionE(nn.Module):
  """pytorch-fid's FIDInceptionE_1 (`max_pool=False`, Mixed_7b) and FIDInceptionE_2 (Mixed_7c)."""
  max_pool: bool

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    b1 = BasicConv(320, (1, 1), name="branch1x1")(x)
    b3 = BasicConv(384, (1, 1), name="branch3x3_1")(x)
    b3 = jnp.concatenate([BasicConv(384, (1, 3), padding=(0, 1), name="branch3x3_2a")(b3),
                          BasicConv(384, (3, 1), padding=(1, 0), name="branch3x3_2b")(b3)], -1)
    bd = BasicConv(448, (1, 1), name="branch3x3dbl_1")(x)
    bd = BasicConv(384, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
    bd = jnp.concatenate([BasicConv(384, (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(bd),
                          BasicConv(384, (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(bd)], -1)
    if self.max_pool:
      pooled = nn.max_pool(x, (3, 3), (1, 1), padding=((1, 1), (1, 1)))  # Pads with -inf.
    else:
      pooled = _tf_avg_pool(x)
    bp = BasicConv(192, (1, 1), name="branch_pool")(pooled)
    return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class FIDInceptionV3(nn.Module):
  """[N, H, W, 3] images in [0, 1] -> [N, 2048] pool3 features (pytorch-fid's block 3)."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = 2.0 * resize_bilinear(x.astype(jnp.float32)) - 1.0
    x = BasicConv(32, (3, 3), stride=2, name="Conv2d_1a_3x3")(x)  # [N, 149, 149, 32]
    x = BasicConv(32, (3, 3), name="Conv2d_2a_3x3")(x)  # [N, 147, 147, 32]
    x = BasicConv(64, (3, 3), padding=(1, 1), name="Conv2d_2b_3x3")(x)
    x = _max_pool_s2(x)  # [N, 73, 73, 64]
    x = BasicConv(80, (1, 1), name="Conv2d_3b_1x1")(x)
    x = BasicConv(192, (3, 3), name="Conv2d_4a_3x3")(x)  # [N, 71, 71, 192]
    x = _max_pool_s2(x)  # [N, 35, 35, 192]
    x = InceptionA(32, name="Mixed_5b")(x)  # [N, 35, 35, 256]
    x = InceptionA(64, name="Mixed_5c")(x)
    x = InceptionA(64, name="Mixed_5d")(x)  # [N, 35, 35, 288]
    x = InceptionB(name="Mixed_6a")(x)  # [N, 17, 17, 768]
    for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
      x = InceptionC(c7, name=name)(x)
    x = InceptionD(name="Mixed_7a")(x)  # [N, 8, 8, 1280]
    x = InceptionE(False, name="Mixed_7b")(x)  # [N, 8, 8, 2048]
    x = InceptionE(True, name="Mixed_7c")(x)
    return jnp.mean(x, axis=(1, 2))  # [N, 2048]


def abstract_variables() -> Any:
  """The network's variables as float32 ShapeDtypeStructs (what a ported checkpoint holds)."""
  shapes = jax.eval_shape(lambda: FIDInceptionV3().init(jax.random.key(0),
                                                        jnp.zeros((1, 64, 64, 3))))
  return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, jnp.float32), shapes)


def load(spec: str = PUBLISHED_NAME, log: Callable[[str], None] = lambda s: None) -> Any:
  """The ported variables: a published name (downloaded or mirrored, ported once) or a directory.

  Without the weights, the error names the file, its URL and how to provide it offline.
  """
  return weights.load_aux(spec, KIND, abstract_variables(), log)


@jax.jit
def _apply(variables: Any, images: jax.Array) -> jax.Array:
  return FIDInceptionV3().apply(variables, images)


def check_images(images: Any) -> np.ndarray:
  """[N, H, W, 3] float images in [0, 1] (uint8 is divided by 255) as float32; else ValueError."""
  images = np.asarray(images)
  if images.ndim != 4 or images.shape[-1] != 3 or images.shape[0] == 0:
    raise ValueError(f"expected RGB images [N, H, W, 3] with N >= 1, got shape {images.shape}")
  if images.dtype == np.uint8:
    return images.astype(np.float32) / 255.0
  if not np.issubdtype(images.dtype, np.floating):
    raise ValueError(f"expected float images in [0, 1] or uint8, got dtype {images.dtype}")
  return images.astype(np.float32)


def features(variables: Any, images: Any, batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
  """[N, 2048] float32 pool3 features of [N, H, W, 3] images in [0, 1], `batch_size` at a time.

  The last batch is padded to `batch_size`, so one compiled step serves every batch.
  """
  images = check_images(images)
  out = []
  for start in range(0, len(images), batch_size):
    batch = images[start:start + batch_size]
    n = len(batch)
    if n < batch_size and len(images) > batch_size:
      batch = np.concatenate([batch, np.zeros((batch_size - n, *batch.shape[1:]), np.float32)])
    out.append(np.asarray(_apply(variables, batch))[:n])
  return np.concatenate(out)
