"""The memory a generate run holds at once, estimated from batch size and K and checked before any
compute against what the host and the devices have.

Per compiled call: the B x K decoded images (float32, then uint8), their latents, and the decoder's
working set for the images of one decode step (chunk_size per device, or all B x K at once when
chunk_size is 0, as on accelerators). On the host: the batches queued for the writer and fetched
(uint8 images and latents) and the sources read ahead.
"""

import os

from jaxvae import options
from jaxvae.generate import pipeline, readers

IMAGE_VALUES = 64 * 64 * 3
# Decoder activations alive per image of a decode step, float32, upper bound over the four models
# (the largest layers are 64x64x32 and 32x32x64, with their inputs and phase temporaries).
STEP_BYTES_PER_IMAGE = 2 << 20
USABLE = 0.8  # Of the memory available, the share a run may plan to use.


def host_available() -> int:
  """MemAvailable of /proc/meminfo, else physical memory."""
  try:
    with open("/proc/meminfo") as f:
      for line in f:
        if line.startswith("MemAvailable:"):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def device_bytes(batch: int, k: int, latent_dim: int, chunk_size: int, devices: int) -> int:
  """Bytes one compiled call holds over all devices of the process."""
  images = batch * k
  step = min(images, chunk_size * devices) if chunk_size else images
  return images * (IMAGE_VALUES * 5 + 3 * latent_dim * 4) + step * STEP_BYTES_PER_IMAGE


def host_bytes(batch: int, k: int, latent_dim: int, save_latents: bool, workers: int) -> int:
  """Bytes of results held for the writer and of sources read ahead."""
  per_batch = batch * k * (IMAGE_VALUES + (3 * latent_dim * 4 if save_latents else 0))
  read_ahead = (3 * batch + workers * readers.CHUNK) * IMAGE_VALUES * 4
  return (pipeline.QUEUE + 2) * per_batch + read_ahead


def check(batch: int, k: int, latent_dim: int, chunk_size: int, save_latents: bool,
          workers: int, devices: list) -> dict:
  """Raises ConfigError when a batch does not fit; returns the estimate in bytes."""
  on_host = all(d.platform == "cpu" for d in devices)
  need_device = device_bytes(batch, k, latent_dim, chunk_size, len(devices))
  need_host = host_bytes(batch, k, latent_dim, save_latents, workers)
  hint = (f"lower config.batch_size ({batch}) or config.num_variations ({k})"
          + ("" if chunk_size else ", or set config.chunk_size to decode in steps"))
  what = f"{batch} sources x {k} variations = {batch * k} images per compiled call"
  if on_host:
    need_host += need_device
  else:
    limit = min((d.memory_stats() or {}).get("bytes_limit", 0) for d in devices)
    per_device = need_device / len(devices)
    if limit and per_device > USABLE * limit:
      raise options.ConfigError(
          f"{what} need about {per_device / 2**30:.1f} GiB on each {devices[0].platform} device, "
          f"which has {limit / 2**30:.1f} GiB; {hint}")
  available = host_available()
  if need_host > USABLE * available:
    raise options.ConfigError(
        f"{what} need about {need_host / 2**30:.1f} GiB of host memory, "
        f"{available / 2**30:.1f} GiB are available; {hint}")
  return {"device_bytes": need_device, "host_bytes": need_host}
