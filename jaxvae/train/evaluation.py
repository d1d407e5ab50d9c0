"""The validation pass (MSE, PSNR, SSIM of deterministic reconstructions, and the original's loss
terms with sampled z) and the reconstruction / sample grids."""

from typing import Any

import jax
import numpy as np

from jaxvae import models
from jaxvae.train import data, logs, step

GRID_IMAGES = 8
GRID_SAMPLES = 16


class Evaluator:
  """A fixed validation set: the first `max_images` of `source`, in order, whole batches only.

  The noise of the sampled loss terms is keyed by (seed, step), so a pass is reproducible.
  """

  def __init__(self, config: step.StepConfig, mesh, source: data.Source, max_images: int,
               batch_size: int, seed: int):
    self.config, self.mesh, self.source, self.seed = config, mesh, source, seed
    n = min(len(source), max_images) if max_images else len(source)
    devices = mesh.devices.size
    self.batch = max(devices, min(batch_size, n) // devices * devices)
    self.count = max(n // self.batch, 1) * self.batch
    self._fn = step.jit_eval_batch(config, mesh)
    latent = config.model.latent_dim
    self._z = np.asarray(jax.random.normal(jax.random.key(seed), (GRID_SAMPLES, latent)))
    model = config.model
    self._recon = jax.jit(lambda v, x: model.apply(v, x).recon)
    self._decode = jax.jit(lambda v, z: model.apply(v, z, method=model.decode))

  def _eps(self, key) -> np.ndarray:
    c = self.config
    return np.asarray(step.sample_eps(key, self.batch, c.model.latent_dim, c.eps_std,
                                      c.eps_shared))

  def _local(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """This process's share of one evaluation batch: (images, valid flags)."""
    valid = np.arange(self.batch) < len(indices)
    if len(indices) < self.batch:  # Fewer images than devices: repeat the last (not scored).
      indices = np.concatenate([indices, np.full(self.batch - len(indices), indices[-1])])
    share = self.batch // jax.process_count()
    part = slice(jax.process_index() * share, (jax.process_index() + 1) * share)
    lo, hi = self.config.model.input_range
    return ((lo + (hi - lo) * self.source.load(indices[part])).astype(np.float32),
            valid[part].astype(np.float32))

  def __call__(self, variables: Any, s: int) -> dict:
    """Means over the validation images of mse, psnr (capped at 100 dB) and ssim, and over the
    batches of the loss terms (loss, reconstruction, kl, unweighted), at step `s`."""
    key = jax.random.fold_in(jax.random.key(self.seed + 1), s)
    total = min(self.count, len(self.source))
    sums: dict = {}
    starts = range(0, total, self.batch)
    for b, start in enumerate(starts):
      images, valid = self._local(np.arange(start, min(start + self.batch, total)))
      out = jax.device_get(self._fn(variables, step.put_batch(self.mesh, images),
                                    self._eps(jax.random.fold_in(key, b)),
                                    step.put_batch(self.mesh, valid)))
      for k, v in out.items():
        sums[k] = sums.get(k, 0.0) + float(v)
    return {k: v / (total if k in ("mse", "psnr", "ssim") else len(starts))
            for k, v in sums.items()}

  def write_images(self, writer: logs.Writer, variables: Any, s: int) -> None:
    """Reconstructions of the first validation images and samples from the prior (computed by
    every process, as multi-host arrays require; written by process 0)."""
    model = self.config.model
    n = min(GRID_IMAGES, len(self.source))
    x01 = self.source.load(np.arange(n))
    lo, hi = model.input_range
    recon = self._recon(variables, (lo + (hi - lo) * x01).astype(np.float32))
    to01 = lambda y: np.asarray(models.to_unit_range(y, model.output_range))
    writer.images(s, "reconstructions", logs.reconstruction_grid(x01, to01(recon)))
    samples = self._decode(variables, self._z)
    writer.images(s, "samples", logs.sample_grid(to01(samples)))
