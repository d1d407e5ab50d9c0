"""--mode=generate's entry point: settings, the run, resume and the summary (jaxvae.generate)."""

import dataclasses
import os
import sys
import time
from typing import Any, Callable

import jax

from jaxvae import celeba, chunking, generated, models, options, outputs
from jaxvae.generate import budget, manifest, pipeline, readers, shards, sources
from jaxvae.generate.sources import Sources


@dataclasses.dataclass(frozen=True)
class Settings:
  """How records are laid out and batched (sampling options are the VAE's, see VAE.options)."""
  num_variations: int = 10
  seed: int = 0
  batch_size: int = 64  # Sources per compiled call (per process).
  shard_size: int = 10_000  # Records per shard, rounded down to whole sources and batches.
  format: str = "array_record"  # or "png"
  image_encoding: str = "raw"  # Images inside ArrayRecord records: "raw" uint8 or "png".
  save_latents: bool = False  # mean, logvar and z of each record.
  workers: int = 0  # Reading workers; 0 = one per core.
  reader: str = "auto"  # "processes", "threads"; auto: processes from 4 workers (readers.py).

  def __post_init__(self):
    check = [("num_variations", 1), ("batch_size", 1), ("shard_size", 1), ("workers", 0)]
    for field, low in check:
      value = getattr(self, field)
      if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise options.ConfigError(f"{field} must be an integer >= {low}, got {value!r}")
    if self.shard_size < self.num_variations:
      raise options.ConfigError(
          f"generate.shard_size ({self.shard_size}) must be at least num_variations "
          f"({self.num_variations}): a shard holds every variation of its sources")
    if self.format not in shards.FORMATS:
      raise options.ConfigError(f"generate.format must be one of {shards.FORMATS}, got "
                                f"{self.format!r}")
    if self.image_encoding not in shards.IMAGE_ENCODINGS:
      raise options.ConfigError(f"generate.image_encoding must be one of "
                                f"{shards.IMAGE_ENCODINGS}, got {self.image_encoding!r}")
    if self.reader not in readers.KINDS:
      raise options.ConfigError(f"generate.reader must be one of {readers.KINDS}, got "
                                f"{self.reader!r}")


def _log(msg: str) -> None:
  print(msg, file=sys.stderr, flush=True)


def _as_sources(vae, source: Any, max_images: int, align: str) -> Sources:
  if isinstance(source, Sources):
    return source
  if isinstance(source, celeba.CelebA):
    return sources.from_celeba(source)
  return sources.from_files(source, models.get_info(vae.name).celeba_box, max_images, align)


def _clear_for_all_processes(root: str) -> None:
  """--overwrite under jax.distributed: process 0 clears, everyone waits for it."""
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
  multihost_utils.sync_global_devices("jaxvae-generate-before-overwrite")
  if jax.process_index() == 0:
    os.makedirs(root, exist_ok=True)
    with manifest.locked(root):
      manifest.clear(root)
  multihost_utils.sync_global_devices("jaxvae-generate-after-overwrite")


def generate(vae: Any, source: Any, workdir: str, num_variations: int = 10, seed: int = 0, *,
             batch_size: int = 0, shard_size: int = 10_000,
             format: str = "array_record",  # pylint: disable=redefined-builtin
             image_encoding: str = "raw", save_latents: bool = False, workers: int = 0,
             reader: str = "auto", max_images: int = 0, align: str = "auto",
             overwrite: bool = False, log: Callable[[str], None] = _log,
             **sampling_options: Any) -> dict:
  """Generates `num_variations` variations of every source into `workdir`/generate/.

  Args:
    vae: a `jaxvae.VAE`.
    source: input spec (comma-separated files, folders, globs; "" = bundled portraits), an
      opened `jaxvae.celeba.CelebA`, or a `Sources`.
    workdir: output folder; the shards go into its generate/ sub-folder.
    batch_size: sources per compiled call of this process (the last one of a shard is padded);
      0 = the backend's default (jaxvae.chunking.batch_size: 64 on the CPU, 1024 elsewhere).
    shard_size, format, image_encoding, save_latents, workers, reader: see `Settings`.
    max_images: only the first `max_images` sources of a file spec (0 = all).
    align: faces in photos of a file spec (jaxvae.data.load_faces): auto, celeba or off.
    overwrite: discard an earlier generate output in `workdir` instead of resuming it.
    **sampling_options: temperature, deterministic, input_noise_std, sampling_rule,
      postprocess (as `VAE.options`).

  Returns:
    The summary: the manifest's counts, this process's throughput and stage times.

  Raises:
    jaxvae.options.ConfigError: bad settings, a batch that does not fit in memory, or a workdir
      holding another config's output (naming the differences).
    jaxvae.outputs.Interrupted: on Ctrl-C, saying which shards were kept.
  """
  start = time.perf_counter()
  if batch_size == 0 and type(batch_size) is int:  # pylint: disable=unidiomatic-typecheck
    batch_size = chunking.batch_size(0)  # The backend's default; Settings checks the rest.
  settings = Settings(num_variations, seed, batch_size, shard_size, format, image_encoding,
                      save_latents, workers, reader)
  opts = vae.options(**sampling_options)
  devices = jax.local_devices()
  workers = settings.workers or os.cpu_count() or 1
  budget.check(batch_size, num_variations, vae.latent_dim, opts.chunk_size, save_latents,
               workers, devices)
  src = _as_sources(vae, source, max_images, align)
  outputs.check_workdir(workdir)
  job, done = _prepare(vae, src, settings, workers, opts,
                       os.path.join(workdir, generated.OUTPUT_DIR), overwrite)
  n = len(src.ids)
  todo = sum(min((s + 1) * job.per_shard, n) - s * job.per_shard for s in job.shards)
  log(f"[generate] {src.description}: {job.num_shards} shards of {job.per_shard} sources x "
      f"{num_variations} variations into {job.root}; {done} already committed, "
      f"{len(job.shards)} to write here (process {jax.process_index()} of "
      f"{jax.process_count()}, {len(devices)} devices)")
  stats = pipeline.Stats(todo * num_variations, log, start)
  stats.add("setup: sources, digests, manifest (wall)", time.perf_counter() - start)
  try:
    pipeline.run(job, vae, opts, stats, devices)
  except KeyboardInterrupt:
    raise outputs.Interrupted(_interrupted(job.root, stats)) from None
  return _finish(workdir, job.root, stats, log)


def _prepare(vae: Any, src: Sources, settings: Settings, workers: int, opts: Any, root: str,
             overwrite: bool) -> tuple[pipeline.Job, int]:
  """This process's job (its shards not committed yet, read by `workers`) and how many shards
  are committed."""
  per_shard = settings.shard_size // settings.num_variations
  if per_shard >= settings.batch_size:  # Whole batches: padding only at the end, after skips.
    per_shard -= per_shard % settings.batch_size
  fresh = manifest.create(vae, src, settings, opts, per_shard)
  if overwrite and jax.process_count() > 1:
    _clear_for_all_processes(root)
    overwrite = False
  state = manifest.start(root, fresh, overwrite)
  done, count = manifest.committed(root, state), state["num_shards"]
  mine = [s for s in range(count)
          if s % jax.process_count() == jax.process_index() and s not in done]
  shards.remove_stale(root, [shards.name(s, count, settings.format) for s in mine])
  layout = shards.Layout(settings.format, settings.image_encoding,
                         vae.latent_dim if settings.save_latents else 0,
                         src.attributes is not None)
  return pipeline.Job(root, src, mine, count, per_shard, layout, settings.batch_size,
                      settings.num_variations, settings.seed, workers, settings.reader), len(done)


def _interrupted(root: str, stats: pipeline.Stats) -> str:
  state = manifest.read(root)
  return (f"interrupted: {state['counts']['shards']} of {state['num_shards']} shards "
          f"({state['counts']['records']} records) are committed in {root} ({stats.shards} by "
          "this run); any shard still being written was discarded. Run the same command again to "
          "resume")


def _finish(workdir: str, root: str, stats: pipeline.Stats, log: Callable[[str], None]) -> dict:
  """The summary: logged, and written into summary.json under the manifest's lock."""
  run = stats.summary()
  with manifest.locked(root):
    state = manifest.read(root)
    if (state["complete"] and state["config"]["format"] == "png"
        and not os.path.exists(os.path.join(root, "index.csv"))):
      shards.write_png_index(root, state)
    path = os.path.join(workdir, outputs.SUMMARY)
    earlier = (outputs.read_json(path) if os.path.exists(path) else {}).get("generate", {})
    summary = {"output": root, "complete": state["complete"], "num_shards": state["num_shards"],
               **state["counts"], "skipped_inputs": [
                   x for s in state["shards"].values() for x in s["skipped"]][:100],
               **{k: v for k, v in earlier.items() if k.startswith("process_")},
               f"process_{jax.process_index()}": run}
    outputs.update_summary(workdir, "generate", summary)
  stages = ", ".join(f"{k} {v:.1f} s" for k, v in run["stage_seconds"].items())
  log(f"[generate] this process: {run['records']} images from {run['sources']} sources "
      f"({run['skipped']} unreadable, skipped) in {run['seconds']:.1f} s, "
      f"{run['images_per_s']:.0f} images/s; {stages}")
  log(f"[generate] {root}: {state['counts']['shards']}/{state['num_shards']} shards, "
      f"{state['counts']['records']} records, {state['counts']['skipped']} skipped inputs"
      + ("" if state["complete"] else "; other processes are still writing theirs"))
  return summary
