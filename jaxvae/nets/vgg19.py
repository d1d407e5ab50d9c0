"""VGG19 features (torchvision's ImageNet weights) and the DFC-VAE feature perceptual loss, in flax.

Hou et al. 2017 ("Deep Feature Consistent Variational Autoencoder", VAE-123) train with
  loss = KL_WEIGHT * KL(q(z|x) || N(0, I)) + FEATURE_WEIGHT * sum_l MSE(phi_l(x), phi_l(x_hat))
over l in relu1_1, relu2_1, relu3_1 of a pretrained VGG19, with KL_WEIGHT = 1 and
FEATURE_WEIGHT = 0.5. The network here is torchvision's `vgg19` (vgg19-dcbb9e9d.pth) on [0, 1]
images normalized with torchvision's ImageNet mean and std. The authors' code used the Caffe
VGG19 on 0-255 BGR images minus the mean pixel, whose features are larger (and so is their loss
relative to the KL term); the loss has the same form.

The weights are the published name `PUBLISHED_NAME`, ported once into the cache by the port tool
(only the five convolutions up to relu3_1); offline, put vgg19-dcbb9e9d.pth in a folder named by
$JAXVAE_MIRROR.
"""

from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxvae import weights

KIND = "vgg19"
PUBLISHED_NAME = "vgg19-imagenet"
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
FEATURE_WEIGHT = 0.5  # Hou et al. 2017: beta, on the sum over the three layers.
KL_WEIGHT = 1.0  # Hou et al. 2017: alpha.
LAYERS = ("relu1_1", "relu2_1", "relu3_1")
_HIGHEST = jax.lax.Precision.HIGHEST


class VGGFeatures(NamedTuple):
  relu1_1: jax.Array  # [B, H, W, 64]
  relu2_1: jax.Array  # [B, H / 2, W / 2, 128]
  relu3_1: jax.Array  # [B, H / 4, W / 4, 256]


def _conv(features: int, name: str) -> nn.Conv:
  """torch Conv2d(k=3, padding=1) as an NHWC flax conv."""
  return nn.Conv(features, (3, 3), padding=((1, 1), (1, 1)), precision=_HIGHEST, name=name)


def _max_pool(x: jax.Array) -> jax.Array:
  return nn.max_pool(x, (2, 2), (2, 2), padding="VALID")


class VGG19(nn.Module):
  """torchvision's vgg19().features up to relu3_1, on [B, H, W, 3] images in [0, 1]."""

  @nn.compact
  def __call__(self, x: jax.Array) -> VGGFeatures:
    x = (x.astype(jnp.float32) - IMAGENET_MEAN) / IMAGENET_STD
    relu1_1 = nn.relu(_conv(64, "conv1_1")(x))  # features.0, .1
    x = nn.relu(_conv(64, "conv1_2")(relu1_1))  # features.2, .3
    relu2_1 = nn.relu(_conv(128, "conv2_1")(_max_pool(x)))  # features.4, .5, .6
    x = nn.relu(_conv(128, "conv2_2")(relu2_1))  # features.7, .8
    relu3_1 = nn.relu(_conv(256, "conv3_1")(_max_pool(x)))  # features.9, .10, .11
    return VGGFeatures(relu1_1, relu2_1, relu3_1)


def abstract_variables() -> Any:
  """The network's variables as float32 ShapeDtypeStructs (what a ported checkpoint holds)."""
  shapes = jax.eval_shape(lambda: VGG19().init(jax.random.key(0), jnp.zeros((1, 8, 8, 3))))
  return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, jnp.float32), shapes)


def load(spec: str = PUBLISHED_NAME, log: Callable[[str], None] = lambda s: None) -> Any:
  """The ported variables: a published name (downloaded or mirrored, ported once) or a directory.

  Without the weights, the error names the file, its URL and how to provide it offline.
  """
  return weights.load_aux(spec, KIND, abstract_variables(), log)


def features(variables: Any, images: jax.Array) -> VGGFeatures:
  """relu1_1, relu2_1 and relu3_1 of [B, H, W, 3] images in [0, 1] (H, W multiples of 4)."""
  return VGG19().apply(variables, images)


def feature_perceptual_loss(variables: Any, x: jax.Array, y: jax.Array) -> jax.Array:
  """[B] sum over relu1_1, relu2_1, relu3_1 of the per-image feature MSE; differentiable.

    loss[b] = sum_l 1 / (C_l H_l W_l) * sum_{h,w,c} (phi_l(x)[b,h,w,c] - phi_l(y)[b,h,w,c])^2

  Its mean over the batch is the authors' Torch7 reduction (per layer, nn.MSECriterion: the mean
  over the batch and every feature element). Weight it with FEATURE_WEIGHT (0.5, the authors'
  content_weight) beside KL_WEIGHT * KL. The paper writes each layer's term as 1 / (2 C H W) sum
  (...)^2, half of this, before the same weight 0.5; its code uses the mean without the half.
  x and y are [B, H, W, 3] images in [0, 1] with H and W multiples of 4.
  """
  if x.shape != y.shape or x.ndim != 4 or x.shape[-1] != 3:
    raise ValueError(f"expected two RGB image batches [B, H, W, 3] of one shape, got {x.shape} "
                     f"and {y.shape}")
  if x.shape[1] % 4 or x.shape[2] % 4:
    raise ValueError(f"image height and width must be multiples of 4 (two 2x2 poolings), got "
                     f"{x.shape[1]}x{x.shape[2]}")
  n = x.shape[0]
  feats = features(variables, jnp.concatenate([x, y]))
  return sum(jnp.mean(jnp.square(f[:n] - f[n:]), axis=(1, 2, 3)) for f in feats)
