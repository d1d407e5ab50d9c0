"""Training logs without TensorFlow: console lines with ETA, TensorBoard event files through
tensorboardX, and image grids (inputs over reconstructions, prior samples) as PNG and events.

Only process 0 writes (multi-host runs log once).
"""

import os
import sys
import time
from typing import Callable, Mapping

import jax
import numpy as np

from jaxvae import outputs

TENSORBOARD_DIR = "tensorboard"
IMAGES_DIR = "images"


def _format(metrics: Mapping[str, float]) -> str:
  return " ".join(f"{k}={v:.5g}" for k, v in metrics.items())


def duration(seconds: float) -> str:
  seconds = int(round(seconds))
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


class Writer:
  """Scalars, text and images to the console and DIR/tensorboard (events) / DIR/images (PNG)."""

  def __init__(self, workdir: str, total_steps: int, print_fn: Callable[[str], None] = print):
    self.enabled = jax.process_index() == 0
    self.workdir = workdir
    self.total_steps = total_steps
    self.print = print_fn if self.enabled else (lambda s: None)
    self._tb = None
    if self.enabled:
      try:
        import tensorboardX  # pylint: disable=import-outside-toplevel
        self._tb = tensorboardX.SummaryWriter(os.path.join(workdir, TENSORBOARD_DIR))
      except ImportError:
        self.print("tensorboardX is not installed (pip install tensorboardX==2.6.5): no "
                   "TensorBoard events, console only")
    self._t0 = time.perf_counter()
    self._last = (self._t0, None)
    self._excluded = 0.0  # seconds of evaluation, images and checkpoints since the last log

  def exclude(self, seconds: float) -> None:
    """Leaves `seconds` (spent outside training steps) out of the next images/s figure."""
    self._excluded += seconds

  def scalars(self, step: int, metrics: Mapping[str, float], prefix: str = "train") -> None:
    if self._tb is not None:
      for k, v in metrics.items():
        self._tb.add_scalar(f"{prefix}/{k}", float(v), step)

  def progress(self, step: int, start_step: int, metrics: Mapping[str, float],
               images_per_step: int) -> None:
    """Logs the training metrics with throughput (images/s since the last call) and ETA."""
    now = time.perf_counter()
    last_time, last_step = self._last
    last_step = start_step if last_step is None else last_step
    rate = (step - last_step) * images_per_step / max(now - last_time - self._excluded, 1e-9)
    self._last, self._excluded = (now, step), 0.0
    done = step - start_step
    eta = (now - self._t0) / max(done, 1) * (self.total_steps - step)
    self.scalars(step, {**metrics, "images_per_second": rate})
    self.print(f"step {step}/{self.total_steps} {_format(metrics)} images/s={rate:.1f} "
               f"eta={duration(eta)}")

  def evaluation(self, step: int, metrics: Mapping[str, float]) -> None:
    self.scalars(step, metrics, "validation")
    self.print(f"step {step} validation {_format(metrics)}")

  def images(self, step: int, name: str, grid: np.ndarray) -> None:
    """A uint8 [H, W, 3] picture as DIR/images/<name>_<step>.png and a TensorBoard image."""
    if not self.enabled:
      return
    outputs.write_png(os.path.join(self.workdir, IMAGES_DIR, f"{name}_{step:08d}.png"), grid)
    if self._tb is not None:
      self._tb.add_image(name, grid, step, dataformats="HWC")

  def text(self, message: str) -> None:
    self.print(message)

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()
      self._tb = None
    sys.stdout.flush()


def reconstruction_grid(inputs01: np.ndarray, recons01: np.ndarray) -> np.ndarray:
  """Inputs (top row) over their deterministic reconstructions (bottom row)."""
  tiles = np.stack([inputs01, recons01])  # [2, N, 64, 64, 3]
  return outputs.grid(tiles, row_labels=("input", "recon"))


def sample_grid(samples01: np.ndarray, columns: int = 8) -> np.ndarray:
  n = len(samples01) // columns * columns
  return outputs.grid(samples01[:n].reshape(-1, columns, *samples01.shape[1:]))
