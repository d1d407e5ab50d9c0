"""facenet-pytorch 2.6.0's own `detect_face`, read from its wheel, for parity tests and benchmarks.

The wheel is never installed; its detect_face.py is executed with torchvision's two imports
stubbed: `batched_nms` is written here from torchvision's documented definition (greedy by score,
drop IoU > threshold, areas (x2 - x1) * (y2 - y1), kept indices by decreasing score) and
`transforms.functional` is only needed by the unused extract_face.
"""

import sys
import types
import zipfile

import numpy as np

DETECT_FACE = "facenet_pytorch/models/utils/detect_face.py"
STUBBED = ("torchvision", "torchvision.ops", "torchvision.ops.boxes", "torchvision.transforms",
           "torchvision.transforms.functional")


def nms(boxes, scores, threshold):
  """torchvision.ops.nms."""
  import torch  # pylint: disable=import-outside-toplevel
  order = torch.argsort(scores, descending=True)
  x1, y1, x2, y2 = boxes.unbind(1)
  area = (x2 - x1) * (y2 - y1)
  keep = []
  while order.numel():
    i, rest = order[0], order[1:]
    keep.append(int(i))
    w = (torch.minimum(x2[i], x2[rest]) - torch.maximum(x1[i], x1[rest])).clamp(min=0)
    h = (torch.minimum(y2[i], y2[rest]) - torch.maximum(y1[i], y1[rest])).clamp(min=0)
    inter = w * h
    order = rest[inter / (area[i] + area[rest] - inter) <= threshold]
  return torch.tensor(keep, dtype=torch.long, device=boxes.device)


def batched_nms(boxes, scores, idxs, threshold):
  """torchvision.ops.boxes.batched_nms: nms per index, kept indices by decreasing score."""
  import torch  # pylint: disable=import-outside-toplevel
  keep = [torch.nonzero(idxs == c).flatten() for c in idxs.unique()]
  keep = [m[nms(boxes[m], scores[m], threshold)] for m in keep]
  if not keep:
    return torch.empty(0, dtype=torch.long, device=boxes.device)
  keep = torch.cat(keep)
  return keep[torch.argsort(scores[keep], descending=True)]


def load(wheel: str, torch_nets: dict, device: str = "cpu"):
  """rgb uint8 [H, W, 3] -> (boxes [N, 5], points [N, 5, 2]) as facenet-pytorch's MTCNN.detect
  with its defaults (min face 20, thresholds 0.6/0.7/0.7, factor 0.709), largest box first;
  the networks run on torch `device`."""
  torch_nets = {k: net.to(device) for k, net in torch_nets.items()}
  stubs = {n: types.ModuleType(n) for n in STUBBED}
  stubs["torchvision.ops.boxes"].batched_nms = batched_nms
  saved = {n: sys.modules.get(n) for n in STUBBED}
  sys.modules.update(stubs)
  try:
    with zipfile.ZipFile(wheel) as z:
      source = z.read(DETECT_FACE).decode()
    module = types.ModuleType("facenet_pytorch_detect_face")
    exec(compile(source, DETECT_FACE, "exec"), module.__dict__)  # pylint: disable=exec-used
  finally:
    for n, m in saved.items():
      if m is None:
        sys.modules.pop(n)
      else:
        sys.modules[n] = m

  def detect(rgb):
    import torch  # pylint: disable=import-outside-toplevel
    with torch.no_grad():
      boxes, points = module.detect_face(rgb, 20, torch_nets["pnet"], torch_nets["rnet"],
                                         torch_nets["onet"], [0.6, 0.7, 0.7], 0.709, device)
    boxes = np.asarray(boxes[0], np.float64).reshape(-1, 5)
    points = np.asarray(points[0], np.float64).reshape(-1, 5, 2)
    order = np.argsort(-(boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), kind="stable")
    return boxes[order], points[order]
  return detect
