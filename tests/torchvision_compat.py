"""Imports PyPI's torchvision beside the CPU torch wheel, for pure-Python models in parity tests.

PyPI's torchvision 0.28.0 (the release for torch 2.13) is built against CUDA torch: its compiled
operators (_C.so, linked to libtorch_cuda) do not load beside the CPU wheel, which torchvision
tolerates, but its import then registers fake kernels for `torchvision::nms` and
`torchvision::qnms` unconditionally and fails with "operator torchvision::nms does not exist".
When, and only when, that happens, this declares the schemas of those two operators (as the
compiled library would: `nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor`) and
imports again. Nothing here implements an operator: the tests only use torchvision's Python
modules (Inception3 blocks, vgg19), which run on plain torch; calling nms would still fail.
"""

import sys

NMS_SCHEMA = "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"
TORCHVISION_VERSION = "0.28.0"


def import_torchvision():
  """torchvision, importable beside the CPU torch wheel (see the module docstring)."""
  import torch  # pylint: disable=import-outside-toplevel

  try:
    import torchvision  # pylint: disable=import-outside-toplevel
  except RuntimeError as e:
    if "torchvision::nms does not exist" not in str(e):
      raise
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
      del sys.modules[name]
    for op in ("nms", "qnms"):
      torch.library.define(f"torchvision::{op}", NMS_SCHEMA)
    import torchvision  # pylint: disable=import-outside-toplevel
  return torchvision
