"""MTCNN's cascade as facenet-pytorch 2.6.0 `detect_face` runs it, with the nets in JAX.

Steps (one image; boxes are x1, y1, x2, y2 in facenet-pytorch's pixel convention):
1. Pyramid: scales m * factor^k with m = 12 / min_face_size while min(H, W) * scale >= 12; each
   level is the image area-resized to (int(H * s + 1), int(W * s + 1)), normalized
   (x - 127.5) / 128. P-Net scores every 12x12 window at stride 2; windows with p >= t0 give
   boxes floor((2 * (x, y) + 1) / s), floor((2 * (x, y) + 12) / s); NMS (IoU 0.5) per level,
   then NMS (IoU 0.7) over all levels; regression b + reg * (x2 - x1, y2 - y1); squared.
2. R-Net on 24x24 area-resized crops (boxes truncated and clipped to the image, as `pad` does):
   keep p > t1, NMS (IoU 0.7), regression b + reg * (w + 1, h + 1), squared.
3. O-Net on 48x48 crops: keep p > t2; landmarks (w + 1) * l + x1 - 1; regression; NMS with
   intersection over the smaller box (0.7, areas with +1 as nms_numpy).
IoU for steps 1-2 is torchvision's (areas without +1). Faces come out largest box first, as
MTCNN.detect(select_largest=True) orders them.

Resizing is facenet-pytorch's `imresample` (torch interpolate, mode "area") reproduced exactly
from an integral image (jaxvae.faces.resample), for the pyramid and the 24/48-pixel crops alike.
One difference: a box whose crop would be empty is dropped (detect_face would fail on it).

P-Net runs once per image on all pyramid levels packed into one canvas (`pack`: columns as tall
as the largest level, about 20% of the canvas unused; a pyramid whose canvas would exceed
2048 x 2048 pixels is split into several), its first layer masked outside the levels
(nets.PNet `mask`), so that every kept output equals the original's on the level alone. The
canvas is padded to a bucket size (k * 2^e, k in 4..7: at most 25% larger per side) and crop
batches to bucket counts: photos of similar sizes share one compiled P-Net, and R-Net and O-Net
compile for a handful of batch sizes.
"""

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxvae.faces import nets, resample


MAX_CANVAS_PIXELS = 1 << 22  # P-Net canvas (2048 x 2048); larger pyramids use several.


class Params(NamedTuple):
  min_face_size: int = 20
  thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
  factor: float = 0.709


class Face(NamedTuple):
  box: np.ndarray  # [4] x1, y1, x2, y2 in pixels of the photo
  score: float  # O-Net's face probability
  # [5, 2] (x, y) of the left eye, right eye, nose, left and right mouth corners (left = image
  # left), as facenet-pytorch returns them: 0-based pixel centres (pixel [r, c] at x=c, y=r).
  landmarks: np.ndarray


def bucket(n: int, minimum: int = 16) -> int:
  """The smallest k * 2^e >= max(n, minimum) with k in {4, 5, 6, 7}."""
  n = max(n, minimum)
  e = max(n.bit_length() - 3, 0)
  return -(-n // (1 << e)) * (1 << e)


def scales(height: int, width: int, params: Params) -> list[float]:
  """facenet-pytorch's pyramid scales (Python floats, the same products in the same order)."""
  m = 12.0 / params.min_face_size
  minl = min(height, width) * m
  out, s = [], m
  while minl >= 12:
    out.append(s)
    s *= params.factor
    minl *= params.factor
  return out


def pack(sizes: list[tuple[int, int]]) -> tuple[list[tuple[int, int]], tuple[int, int]]:
  """Places pyramid levels (h, w), largest first, in columns as tall as the first one.

  Returns each level's (y, x) offset (even, so that P-Net's stride-2 pool grid stays aligned
  with every level's own grid) and the canvas (height, width).
  """
  height = sizes[0][0]
  offsets, column_x, column_w, y = [], 0, 0, 0
  for h, w in sizes:
    if y > 0 and y + h > height:
      column_x, column_w, y = column_x + column_w, 0, 0
    offsets.append((y, column_x))
    y += h + h % 2
    column_w = max(column_w, w + w % 2)
  return offsets, (height, column_x + column_w)


def _canvas_pixels(sizes: list[tuple[int, int]]) -> int:
  _, (h, w) = pack(sizes)
  return bucket(h) * bucket(w)


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float,
        use_min: bool = False) -> np.ndarray:
  """Greedy NMS -> kept indices, highest score first.

  use_min=False: torchvision.ops.nms (IoU, areas (x2 - x1) * (y2 - y1)); True: facenet-pytorch's
  nms_numpy 'Min' (intersection / smaller area, areas and sides with +1). Drops overlaps above
  the threshold.
  """
  plus = 1.0 if use_min else 0.0
  x1, y1, x2, y2 = (boxes[:, i].astype(np.float64) for i in range(4))
  area = (x2 - x1 + plus) * (y2 - y1 + plus)
  order = np.argsort(-scores, kind="stable")
  keep = []
  while order.size:
    i, rest = order[0], order[1:]
    keep.append(i)
    w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + plus)
    h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + plus)
    inter = w * h
    denom = np.minimum(area[i], area[rest]) if use_min else area[i] + area[rest] - inter
    order = rest[inter / denom <= threshold]
  return np.asarray(keep, np.int64)


def square(boxes: np.ndarray) -> np.ndarray:
  """facenet-pytorch's rerec: the square of side max(w, h) on the same centre (no +1)."""
  boxes = boxes.copy()
  w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
  side = np.maximum(w, h)
  boxes[:, 0] += w * 0.5 - side * 0.5
  boxes[:, 1] += h * 0.5 - side * 0.5
  boxes[:, 2] = boxes[:, 0] + side
  boxes[:, 3] = boxes[:, 1] + side
  return boxes


def regress(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
  """facenet-pytorch's bbreg: each side moves by reg * (w + 1) or (h + 1)."""
  boxes = boxes.copy()
  w = boxes[:, 2] - boxes[:, 0] + 1
  h = boxes[:, 3] - boxes[:, 1] + 1
  boxes[:, :4] += reg[:, :4] * np.stack([w, h, w, h], axis=1)
  return boxes


def crop_boxes(boxes: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
  """facenet-pytorch's `pad` + slicing: int [N, 4] crops [x0, y0, x1, y1) and which are non-empty.

  Coordinates are truncated toward zero, x1/y1 clipped to >= 1 and x2/y2 to <= W/H; the crop is
  rows y1 - 1 .. y2 - 1 and columns x1 - 1 .. x2 - 1.
  """
  b = np.trunc(boxes[:, :4]).astype(np.int64)
  x0, y0 = np.maximum(b[:, 0], 1) - 1, np.maximum(b[:, 1], 1) - 1
  x1, y1 = np.minimum(b[:, 2], width), np.minimum(b[:, 3], height)
  return np.stack([x0, y0, x1, y1], axis=1), (x1 > x0) & (y1 > y0)


def normalize(x: np.ndarray) -> np.ndarray:
  return (x - np.float32(127.5)) * np.float32(0.0078125)


class Detector:
  """MTCNN with given flax variables ({"pnet", "rnet", "onet"}); call it on uint8 [H, W, 3]."""

  def __init__(self, variables: dict, params: Params = Params()):
    self.variables = jax.tree.map(jnp.asarray, variables)
    self.params = params
    self._pnet = jax.jit(lambda v, x, mask: nets.PNet().apply(v, x, mask))
    self._rnet = jax.jit(lambda v, x: nets.RNet().apply(v, x))
    self._onet_apply = jax.jit(lambda v, x: nets.ONet().apply(v, x))

  def __call__(self, rgb: np.ndarray) -> list[Face]:
    if rgb.ndim != 3 or rgb.shape[-1] != 3 or rgb.dtype != np.uint8:
      raise ValueError(f"detect expects an RGB uint8 image [H, W, 3], got {rgb.dtype} "
                       f"{tuple(rgb.shape)}")
    height, width = rgb.shape[:2]
    integral = resample.integral_image(rgb)
    boxes = self._stage1(integral, height, width)
    boxes = self._stage2(integral, boxes, height, width)
    boxes, points = self._stage3(integral, boxes, height, width)
    order = np.argsort(-(boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), kind="stable")
    return [Face(boxes[i, :4].astype(np.float64), float(boxes[i, 4]),
                 points[i].astype(np.float64)) for i in order]

  def _pnet_maps(self, integral: np.ndarray, height: int, width: int, level_scales: list[float]):
    """P-Net's maps (reg [h, w, 4], face prob [h, w]) per level, levels packed into canvases."""
    sizes = [(int(height * s + 1), int(width * s + 1)) for s in level_scales]
    maps, start = [], 0
    while start < len(sizes):
      end = start + 1  # The longest run of levels whose canvas stays within MAX_CANVAS_PIXELS.
      while end < len(sizes) and _canvas_pixels(sizes[start:end + 1]) <= MAX_CANVAS_PIXELS:
        end += 1
      maps += self._pnet_canvas(integral, sizes[start:end])
      start = end
    return maps

  def _pnet_canvas(self, integral: np.ndarray, sizes: list[tuple[int, int]]):
    offsets, (canvas_h, canvas_w) = pack(sizes)
    canvas = np.zeros((1, bucket(canvas_h), bucket(canvas_w), 3), np.float32)
    mask = np.zeros((canvas.shape[1] - 2, canvas.shape[2] - 2), bool)
    for (hs, ws), (y, x) in zip(sizes, offsets):
      canvas[0, y:y + hs, x:x + ws] = normalize(resample.resize_area(integral, hs, ws))
      mask[y:y + hs - 2, x:x + ws - 2] = True
    reg, prob = (np.asarray(a[0]) for a in self._pnet(self.variables["pnet"], canvas, mask))
    maps = []
    for (hs, ws), (y, x) in zip(sizes, offsets):
      rows = slice(y // 2, y // 2 + math.ceil((hs - 2) / 2) - 4)
      cols = slice(x // 2, x // 2 + math.ceil((ws - 2) / 2) - 4)
      maps.append((reg[rows, cols], prob[rows, cols, 1]))
    return maps

  def _stage1(self, integral: np.ndarray, height: int, width: int) -> np.ndarray:
    """Candidate boxes [N, 5] (x1, y1, x2, y2, score) from the pyramid."""
    found = []
    level_scales = scales(height, width, self.params)
    for scale, (reg, prob) in zip(level_scales,
                                  self._pnet_maps(integral, height, width, level_scales)):
      ys, xs = np.nonzero(prob >= self.params.thresholds[0])
      cell = np.stack([xs, ys], axis=1).astype(np.float32)
      q1 = np.floor((2 * cell + 1) / np.float32(scale))
      q2 = np.floor((2 * cell + 12) / np.float32(scale))
      boxes = np.concatenate([q1, q2, prob[ys, xs, None], reg[ys, xs]], axis=1)
      found.append(boxes[nms(boxes, boxes[:, 4], 0.5)])
    boxes = np.concatenate(found, axis=0) if found else np.zeros((0, 9), np.float32)
    boxes = boxes[nms(boxes, boxes[:, 4], 0.7)]
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    moved = boxes[:, :4] + boxes[:, 5:9] * np.stack([w, h, w, h], axis=1)
    return square(np.concatenate([moved, boxes[:, 4:5]], axis=1))

  def _crops(self, integral: np.ndarray, boxes: np.ndarray, height: int, width: int,
             size: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalized crops [bucket(N), size, size, 3] (zero rows past N) and the non-empty mask."""
    crops, ok = crop_boxes(boxes, width, height)
    out = np.zeros((bucket(int(ok.sum()), 8), size, size, 3), np.float32)
    out[:ok.sum()] = normalize(resample.crops_area(integral, crops[ok], size))
    return out, ok

  def _stage2(self, integral: np.ndarray, boxes: np.ndarray, height: int, width: int):
    if not len(boxes):
      return boxes
    crops, ok = self._crops(integral, boxes, height, width, 24)
    boxes = boxes[ok]
    reg, prob = (np.asarray(a)[:len(boxes)] for a in self._rnet(self.variables["rnet"], crops))
    keep = prob[:, 1] > self.params.thresholds[1]
    boxes = np.concatenate([boxes[keep, :4], prob[keep, 1:2]], axis=1)
    reg = reg[keep]
    pick = nms(boxes, boxes[:, 4], 0.7)
    return square(regress(boxes[pick], reg[pick]))

  def _onet(self, integral: np.ndarray, boxes: np.ndarray, height: int, width: int):
    """O-Net on the 48x48 crops: (boxes with non-empty crops, reg, points [N, 5, 2], face prob)."""
    crops, ok = self._crops(integral, boxes, height, width, 48)
    boxes = boxes[ok]
    out = self._onet_apply(self.variables["onet"], crops)
    reg, marks, prob = (np.asarray(a)[:len(boxes)] for a in out)
    w = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
    h = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
    points = np.stack([w * marks[:, :5] + boxes[:, :1] - 1,
                       h * marks[:, 5:] + boxes[:, 1:2] - 1], axis=2)
    return boxes, reg, points, prob[:, 1]

  def _stage3(self, integral: np.ndarray, boxes: np.ndarray, height: int, width: int):
    if not len(boxes):
      return np.zeros((0, 5), np.float32), np.zeros((0, 5, 2), np.float32)
    boxes, reg, points, prob = self._onet(integral, boxes, height, width)
    keep = prob > self.params.thresholds[2]
    boxes = regress(np.concatenate([boxes[keep, :4], prob[keep, None]], axis=1), reg[keep])
    pick = nms(boxes, boxes[:, 4], 0.7, use_min=True)
    return boxes[pick], points[keep][pick]

  def landmarks_in_boxes(self, rgb: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """O-Net's landmarks [N, 5, 2] and face probabilities [N] for given boxes [N, 4] of `rgb`."""
    integral = resample.integral_image(rgb)
    boxes = np.concatenate([boxes, np.zeros((len(boxes), 1))], axis=1).astype(np.float32)
    _, _, points, prob = self._onet(integral, boxes, *rgb.shape[:2])
    return points, prob
