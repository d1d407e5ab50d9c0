"""Face detection and CelebA alignment: faces per second at two photo sizes, side by side
with facenet-pytorch's own detect_face (torch), in one run.

  python benchmarks/faces.py [--sizes=512,2048] [--repeats=5] [--schedule] [--torch]

Photos per size S: the astronaut portrait resized to S x S (one face) and the two bundled
portraits side by side resized to S wide (two faces). Timed, interleaved, medians:
- jax detect: jaxvae.faces' MTCNN cascade (the Detector, no disk cache);
- jax detect+align: faces.align_all (detect, one landmark refinement pass, CelebA warp);
- torch detect: facenet-pytorch 2.6.0's detect_face from its wheel (tests/facenet_reference.py)
  with the same weights (--torch_threads, default torch's own choice; --torch_device).
Cold: the first detect call per photo (compiles for new canvas/batch buckets), reported apart.
--schedule applies jaxvae.schedule's CPU flags as main.py does (two single-threaded host
devices: detection then runs on one core); --noschedule leaves XLA's defaults (both cores).
"""

import os
import sys
import time

from absl import app
from absl import flags
from absl import logging

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [_ROOT, os.path.join(_ROOT, "tests"), os.path.join(_ROOT, "benchmarks")]

from jaxvae import schedule  # pylint: disable=wrong-import-position  (imports no jax)

_SIZES = flags.DEFINE_list("sizes", ["512", "2048"], "Photo sizes (longest side, pixels).")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed rounds; medians are reported.")
_SCHEDULE = flags.DEFINE_bool("schedule", True, "Use jaxvae.schedule's CPU XLA flags (main.py's).")
_TORCH = flags.DEFINE_bool("torch", True, "Also time facenet-pytorch's original detect_face.")
_TORCH_THREADS = flags.DEFINE_integer("torch_threads", 0, "torch threads (0: torch's default).")
_TORCH_DEVICE = flags.DEFINE_string("torch_device", "cpu", "torch device of the original.")
_WEIGHTS = flags.DEFINE_string("weights", "mtcnn", "Published name or ported MTCNN directory.")


def _photos(size: int) -> dict:
  """{label: (rgb, expected faces)} at `size` pixels wide."""
  import cv2  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  from jaxvae import data  # pylint: disable=import-outside-toplevel
  a, g = (loader() for loader, _ in data.BUNDLED.values())
  pair = np.concatenate([np.pad(a, ((0, g.shape[0] - a.shape[0]), (0, 0), (0, 0))), g], axis=1)
  resize = lambda im, w, h: cv2.resize(im, (w, h), interpolation=cv2.INTER_AREA if w < im.shape[1]
                                       else cv2.INTER_CUBIC)
  height = round(size * pair.shape[0] / pair.shape[1])
  return {f"{size}x{size} one face": (resize(a, size, size), 1),
          f"{size}x{height} two faces": (resize(pair, size, height), 2)}


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # Orbax logs every step at INFO.
  if _SCHEDULE.value:
    schedule.configure_xla_flags()
  import jax  # pylint: disable=import-outside-toplevel
  import common  # pylint: disable=import-outside-toplevel  (imports jax: after the flags)
  from jaxvae import faces  # pylint: disable=import-outside-toplevel

  print(f"jax {jax.__version__} on {jax.devices()}; XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
  start = time.perf_counter()
  det = faces.detector(_WEIGHTS.value)
  print(f"weights loaded in {time.perf_counter() - start:.2f} s")
  original = None
  if _TORCH.value:
    import torch  # pylint: disable=import-outside-toplevel
    if _TORCH_THREADS.value:
      torch.set_num_threads(_TORCH_THREADS.value)
    import facenet_reference  # pylint: disable=import-outside-toplevel
    from port import mtcnn as port_mtcnn  # pylint: disable=import-outside-toplevel
    from port.torch_ref import mtcnn as torch_mtcnn  # pylint: disable=import-outside-toplevel
    wheel = port_mtcnn.resolve("mtcnn")
    original = facenet_reference.load(wheel, torch_mtcnn.load(port_mtcnn.read_state_dicts(wheel)),
                                       _TORCH_DEVICE.value)
    print(f"torch {torch.__version__} on {_TORCH_DEVICE.value}, {torch.get_num_threads()} threads")

  print(f"\n| photo | cold detect (s) | jax detect faces/s | jax detect+align faces/s "
        f"| torch detect faces/s | jax / torch |")
  print("|---|---|---|---|---|---|")
  for size in map(int, _SIZES.value):
    for label, (rgb, expected) in _photos(size).items():
      start = time.perf_counter()
      found = det(rgb)
      cold = time.perf_counter() - start
      if len(found) != expected:
        print(f"warning: {label}: {len(found)} faces found, {expected} expected")
      fns = {"detect": lambda rgb=rgb: det(rgb),
             "align": lambda rgb=rgb: faces.align_all(rgb, _WEIGHTS.value)}
      if original is not None:
        original(rgb)  # warm-up
        fns["torch"] = lambda rgb=rgb: original(rgb)
      times = common.interleaved(fns, _REPEATS.value)
      rate = {k: len(found) / common.median(v) for k, v in times.items()}
      torch_rate = f"{rate['torch']:.2f}" if "torch" in rate else "-"
      ratio = f"{rate['detect'] / rate['torch']:.2f}x" if "torch" in rate else "-"
      print(f"| {label} | {cold:.2f} | {rate['detect']:.2f} | {rate['align']:.2f} | {torch_rate} "
            f"| {ratio} |", flush=True)


if __name__ == "__main__":
  app.run(main)
