"""MTCNN's P-Net, R-Net and O-Net (facenet-pytorch 2.6.0) as NHWC flax modules, explicit padding.

Layer names are facenet-pytorch's (`conv1`, `prelu1`, `dense5_1`, ...), so the port's table reads
like its state_dicts. Max pools are torch's `ceil_mode=True` pools: the last window may hang over
the edge and covers only the pixels inside (-inf padding on the right and bottom). The dense
layers see the features flattened as facenet-pytorch does, `x.permute(0, 3, 2, 1)`: W-major, then
H, then C.
"""

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp


class PNetOutput(NamedTuple):
  reg: jax.Array  # [B, h, w, 4] box regression (dx1, dy1, dx2, dy2) per 12x12 window
  prob: jax.Array  # [B, h, w, 2] softmax (no face, face)


class RNetOutput(NamedTuple):
  reg: jax.Array  # [B, 4]
  prob: jax.Array  # [B, 2]


class ONetOutput(NamedTuple):
  reg: jax.Array  # [B, 4]
  landmarks: jax.Array  # [B, 10]: x of the five points, then y, relative to the box
  prob: jax.Array  # [B, 2]


class PReLU(nn.Module):
  """torch.nn.PReLU(C): max(0, x) + weight * min(0, x), one slope per channel (last axis)."""
  features: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    weight = self.param("weight", nn.initializers.constant(0.25), (self.features,))
    return jnp.where(x >= 0, x, weight * x)


def _conv(features: int, kernel: int, name: str) -> nn.Conv:
  """torch.nn.Conv2d(kernel_size=kernel), stride 1, no padding."""
  return nn.Conv(features, (kernel, kernel), padding=((0, 0), (0, 0)), name=name)


def ceil_max_pool(x: jax.Array, window: int, stride: int) -> jax.Array:
  """torch.nn.MaxPool2d(window, stride, ceil_mode=True) on [B, H, W, C] (no padding).

  Out size = ceil((n - window) / stride) + 1; the right/bottom pad is -inf, as torch ignores the
  part of the last window outside the input.
  """
  pads = []
  for n in x.shape[1:3]:
    out = -(-(n - window) // stride) + 1
    pads.append((0, (out - 1) * stride + window - n))
  return nn.max_pool(x, (window, window), strides=(stride, stride), padding=pads)


def _flatten_whc(x: jax.Array) -> jax.Array:
  """[B, H, W, C] -> [B, W*H*C] in the order of torch's x.permute(0, 3, 2, 1).view(B, -1)."""
  return jnp.transpose(x, (0, 2, 1, 3)).reshape(x.shape[0], -1)


class PNet(nn.Module):
  """Proposal net, fully convolutional: one output per 12x12 window at stride 2.

  `mask` [H - 2, W - 2] (bool) marks the conv1 outputs whose 3x3 window lies inside one image:
  the others are set to -inf before the pool. Several images (pyramid levels) packed into one
  input at even offsets then give, at every output whose 12x12 window lies inside one of them,
  exactly the original's output on that image alone: its ceil-mode pool sees the same window.
  """

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> PNetOutput:
    x = PReLU(10, name="prelu1")(_conv(10, 3, "conv1")(x))
    if mask is not None:
      x = jnp.where(mask[None, :, :, None], x, -jnp.inf)
    x = ceil_max_pool(x, 2, 2)
    x = PReLU(16, name="prelu2")(_conv(16, 3, "conv2")(x))
    x = PReLU(32, name="prelu3")(_conv(32, 3, "conv3")(x))
    prob = nn.softmax(_conv(2, 1, "conv4_1")(x), axis=-1)
    return PNetOutput(_conv(4, 1, "conv4_2")(x), prob)


class RNet(nn.Module):
  """Refinement net on 24x24 crops."""

  @nn.compact
  def __call__(self, x: jax.Array) -> RNetOutput:
    x = ceil_max_pool(PReLU(28, name="prelu1")(_conv(28, 3, "conv1")(x)), 3, 2)
    x = ceil_max_pool(PReLU(48, name="prelu2")(_conv(48, 3, "conv2")(x)), 3, 2)
    x = PReLU(64, name="prelu3")(_conv(64, 2, "conv3")(x))
    x = PReLU(128, name="prelu4")(nn.Dense(128, name="dense4")(_flatten_whc(x)))
    prob = nn.softmax(nn.Dense(2, name="dense5_1")(x), axis=-1)
    return RNetOutput(nn.Dense(4, name="dense5_2")(x), prob)


class ONet(nn.Module):
  """Output net on 48x48 crops: score, box regression and five landmarks."""

  @nn.compact
  def __call__(self, x: jax.Array) -> ONetOutput:
    x = ceil_max_pool(PReLU(32, name="prelu1")(_conv(32, 3, "conv1")(x)), 3, 2)
    x = ceil_max_pool(PReLU(64, name="prelu2")(_conv(64, 3, "conv2")(x)), 3, 2)
    x = ceil_max_pool(PReLU(64, name="prelu3")(_conv(64, 3, "conv3")(x)), 2, 2)
    x = PReLU(128, name="prelu4")(_conv(128, 2, "conv4")(x))
    x = PReLU(256, name="prelu5")(nn.Dense(256, name="dense5")(_flatten_whc(x)))
    prob = nn.softmax(nn.Dense(2, name="dense6_1")(x), axis=-1)
    return ONetOutput(nn.Dense(4, name="dense6_2")(x), nn.Dense(10, name="dense6_3")(x), prob)


NETS = {"pnet": (PNet, 12), "rnet": (RNet, 24), "onet": (ONet, 48)}  # module, input size


def abstract_variables() -> dict:
  """{"pnet"|"rnet"|"onet": {"params": ...}} as ShapeDtypeStructs (float32)."""
  out = {}
  for name, (module, size) in NETS.items():
    x = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
    out[name] = jax.eval_shape(lambda x, m=module: m().init(jax.random.key(0), x), x)
  return out
