"""Times the batched, jitted JAX report chain against the report's per-image OpenCV/PIL chain."""

import os
import statistics
import sys
import time

from absl import app
from absl import flags
import cv2
import jax
import numpy as np

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_NUM_IMAGES = flags.DEFINE_integer("num_images", 640, "Images in the batch.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed repeats per chain; the median is reported.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the image crops.")


def _median_seconds(fn, repeats: int) -> float:
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def main(argv):
  del argv
  sys.path[:0] = [_ROOT, os.path.join(_ROOT, "tests")]
  import postprocess_reference as ref  # pylint: disable=g-import-not-at-top
  from jaxvae import postprocess  # pylint: disable=g-import-not-at-top

  images = ref.sample_images(_NUM_IMAGES.value, size=64, seed=_SEED.value)
  chain = jax.jit(postprocess.build_pipeline("report"))
  on_device = jax.device_put(images)
  jax_out = np.asarray(chain(on_device).block_until_ready())  # Warm-up: compiles.
  jax_s = _median_seconds(lambda: chain(on_device).block_until_ready(), _REPEATS.value)
  with_transfer_s = _median_seconds(lambda: np.asarray(chain(jax.device_put(images))),
                                    _REPEATS.value)

  ref_out = np.stack([ref.report_chain(image) for image in images])  # Warm-up.
  ref_s = _median_seconds(lambda: [ref.report_chain(image) for image in images], _REPEATS.value)

  n = len(images)
  diff = np.abs(jax_out.astype(np.float64) - ref_out) * 255
  print(f"{n} images 64x64x3, report chain (enhance, dehaze, bilateral, unsharp), "
        f"median of {_REPEATS.value}")
  print(f"JAX batched jit on {jax.devices()[0].device_kind}: {jax_s * 1e3:9.1f} ms "
        f"({n / jax_s:8.0f} images/s); with host transfers {with_transfer_s * 1e3:.1f} ms")
  print(f"OpenCV/PIL/numpy per image ({cv2.getNumThreads()} OpenCV threads): "
        f"{ref_s * 1e3:9.1f} ms ({n / ref_s:8.0f} images/s)")
  print(f"ratio (per-image / batched JAX): {ref_s / jax_s:.1f}x")
  print(f"max |JAX - reference| = {diff.max():.3f} levels of 255; values more than 1 level off: "
        f"{np.mean(diff > 1.001):.2e}; bit-equal: {np.mean(diff < 1e-3):.6f}")


if __name__ == "__main__":
  app.run(main)
