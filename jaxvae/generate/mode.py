"""--mode=generate: the config's sources (config.celeba's split, else config.input) into shards."""

import jax

from jaxvae import models, options
from jaxvae.generate import generate as generate_records
from jaxvae.generate import sources
from jaxvae.modes import common


def _distributed(spec: str) -> None:
  """jax.distributed.initialize from config.generate.distributed, before any computation."""
  if not spec:
    return
  jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU processes' barriers.
  try:
    if spec == "auto":
      jax.distributed.initialize()
    else:
      address, num, index = (p.strip() for p in spec.split(","))
      jax.distributed.initialize(address, num_processes=int(num), process_id=int(index))
  except RuntimeError as e:  # E.g. started after a computation, or no coordinator found.
    raise options.ConfigError(f"config.generate.distributed={spec!r}: {e}") from None


def generate(run: options.Run, workdir: str, overwrite: bool = False) -> dict:
  """num_variations variations of every source, streamed into <workdir>/generate/."""
  c, g = run.common, run.section
  _distributed(g.distributed)
  vae = common.load_vae(c)
  box = models.get_info(vae.name).celeba_box
  if c.celeba:
    src = sources.open_celeba(c.celeba, c.split, box, g.max_images)
  else:
    src = sources.from_files(c.input, box, g.max_images, c.align)
  return generate_records(
      vae, src, workdir, c.num_variations, c.seed, batch_size=c.batch_size,
      shard_size=g.shard_size, format=g.format, image_encoding=g.image_encoding,
      save_latents=g.save_latents, workers=g.workers, reader=g.reader, overwrite=overwrite,
      log=common.log, temperature=c.temperature, input_noise_std=c.input_noise_std,
      sampling_rule=c.sampling_rule, postprocess=c.postprocess)
