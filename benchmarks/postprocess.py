"""The report's post-processing: the JAX presets as the generation engine runs them, against the
per-image PIL/OpenCV/numpy reference on both cores, side by side in one run.

  python benchmarks/postprocess.py [--presets=report,figure1,generations] [--num_images=512]
      [--chunk_size=8] [--repeats=7] [--profile]

JAX: jaxvae.schedule's CPU flags (one single-threaded host device per core), the batch split
over the devices with shard_map and each shard mapped in chunks of --chunk_size with lax.map, as
jaxvae.sampling.decode runs a chain on decoded images. Reference: tests/postprocess_reference.py's
chain (the report's code), image by image, in a pool of one process per host device (OpenCV
single-threaded in each), the images sent to the workers before timing. The two sides alternate;
medians. --profile adds each stage of the report chain alone, on the levels it gets there.
Prints images/s of each side, their ratio and the largest difference.
"""

import multiprocessing
import os
import statistics
import sys
import time

from absl import app
from absl import flags

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [_ROOT, os.path.join(_ROOT, "tests")]

from jaxvae import schedule  # pylint: disable=wrong-import-position  (imports no jax)

_PRESETS = flags.DEFINE_list("presets", ["report"], "Presets to time.")
_NUM_IMAGES = flags.DEFINE_integer("num_images", 512, "Images per run.")
_CHUNK = flags.DEFINE_integer("chunk_size", 8, "Images per lax.map step (sampling.decode's).")
_REPEATS = flags.DEFINE_integer("repeats", 7, "Timed runs per side; medians are reported.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the face crops.")
_PROFILE = flags.DEFINE_bool("profile", False, "Also time each stage of the report chain.")

_WORKER = {}


def _worker_init(images, name: str) -> None:
  import cv2  # pylint: disable=import-outside-toplevel
  cv2.setNumThreads(1)
  _WORKER.update(images=images, name=name)


def _worker_run(part: tuple[int, int], keep: bool):
  import postprocess_reference as ref  # pylint: disable=import-outside-toplevel
  out = [ref.CHAINS[_WORKER["name"]](im) for im in _WORKER["images"][part[0]:part[1]]]
  return out if keep else len(out)


def _rate(times: list[float], n: int) -> float:
  return n / statistics.median(times)


def _sharded(fn, chunk: int):
  """Jitted fn over the batch split across the host devices, each shard in chunks (lax.map)."""
  import jax  # pylint: disable=import-outside-toplevel
  from jaxvae import chunking  # pylint: disable=import-outside-toplevel
  mesh = jax.sharding.Mesh(jax.devices(), ("b",))
  spec = jax.sharding.PartitionSpec("b")
  run = jax.jit(jax.shard_map(lambda x: chunking.map_chunks(fn, x, chunk), mesh=mesh,
                              in_specs=spec, out_specs=spec))
  return run, jax.sharding.NamedSharding(mesh, spec)


def _alternate(first, second, repeats: int) -> tuple[list[float], list[float]]:
  """Seconds of `repeats` runs of each, alternating."""
  times = ([], [])
  for _ in range(repeats):
    for run, out in zip((first, second), times):
      start = time.perf_counter()
      run()
      out.append(time.perf_counter() - start)
  return times


def _compare_preset(name: str, images, devices: int) -> None:
  import jax  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  from jaxvae import postprocess  # pylint: disable=import-outside-toplevel
  n = len(images)
  run, sharding = _sharded(postprocess.build_pipeline(name), _CHUNK.value)
  x = jax.device_put(images, sharding)
  start = time.perf_counter()
  jax_out = np.asarray(run(x))
  compile_s = time.perf_counter() - start
  parts = [(i * n // devices, (i + 1) * n // devices) for i in range(devices)]
  with multiprocessing.get_context("spawn").Pool(devices, _worker_init, (images, name)) as pool:
    ref_out = np.concatenate([np.stack(o) for o in pool.starmap(
        _worker_run, [(p, True) for p in parts])])
    jax_t, ref_t = _alternate(lambda: run(x).block_until_ready(),
                              lambda: pool.starmap(_worker_run, [(p, False) for p in parts]),
                              _REPEATS.value)
  jax_rate, ref_rate = _rate(jax_t, n), _rate(ref_t, n)
  jax_best, ref_best = n / min(jax_t), n / min(ref_t)
  diff = np.abs(jax_out.astype(np.float64) - ref_out) * 255
  print(f"\n'{name}' on {n} face crops 64x64 ({_REPEATS.value} runs each, median (best); first "
        f"JAX call {compile_s:.1f} s):")
  print(f"  JAX, {devices} host devices, chunks of {_CHUNK.value}: {jax_rate:8.0f} ({jax_best:.0f})"
        f" images/s")
  print(f"  reference, pool of {devices} processes:  {ref_rate:8.0f} ({ref_best:.0f}) images/s")
  print(f"  ratio JAX / reference: {jax_rate / ref_rate:.2f}x ({jax_best / ref_best:.2f}x)")
  print(f"  max |JAX - reference| = {diff.max():.0f} levels of 255; more than 1 level off: "
        f"{np.mean(diff > 1.001):.2e}; more than 2: {np.mean(diff > 2.001):.2e}; equal: "
        f"{np.mean(diff < 1e-3):.6f}")


def _profile(images) -> None:
  """Each stage of the report chain alone, on the levels it gets in the chain."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  import postprocess_reference as ref  # pylint: disable=import-outside-toplevel
  from jaxvae import postprocess  # pylint: disable=import-outside-toplevel
  from jaxvae.postprocess import levels  # pylint: disable=import-outside-toplevel
  n = len(images)
  steps = [ref.report_chain(im, intermediates=True) for im in images]
  inputs = [ref.trunc(images)] + [ref.trunc(np.stack([s[i] for s in steps])) for i in range(3)]
  ref_fns = [ref.enhance, lambda u: ref.trunc(ref.dehaze(u / 255)),
             lambda u: ref.smooth_image(u / 255, 5), lambda u: ref.unsharp_mask(u / 255)]
  print(f"\nreport chain stage by stage, {n} images; JAX on int32 levels, "
        f"{len(jax.devices())} devices, chunks of {_CHUNK.value}; reference in one process:")
  for step, u, ref_fn in zip(postprocess.PRESETS["report"].steps, inputs, ref_fns):
    kernel = postprocess.LEVEL_STAGES[step.stage]
    run, sharding = _sharded(
        lambda v, k=kernel, p=step.params: levels.merge(k(levels.split(v), **p)), _CHUNK.value)
    x = jax.device_put(jnp.asarray(u, jnp.int32), sharding)
    run(x).block_until_ready()
    jax_t, ref_t = _alternate(lambda: run(x).block_until_ready(),
                              lambda: [ref_fn(v) for v in u], _REPEATS.value)
    print(f"  {step.stage:10s} JAX {_rate(jax_t, n):8.0f} images/s   reference "
          f"{_rate(ref_t, n):8.0f} images/s")


def main(argv):
  del argv
  schedule.configure_xla_flags()
  import jax  # pylint: disable=import-outside-toplevel
  import postprocess_reference as ref  # pylint: disable=import-outside-toplevel

  devices = len(jax.devices())
  n = _NUM_IMAGES.value - _NUM_IMAGES.value % (devices * max(_CHUNK.value, 1))
  images = ref.face_crops(n, size=64, seed=_SEED.value)
  print(f"{os.cpu_count()} cores ({len(os.sched_getaffinity(0))} usable); jax {jax.__version__} "
        f"on {jax.devices()[0].device_kind}; XLA_FLAGS={os.environ.get('XLA_FLAGS', '')}; "
        f"load average {os.getloadavg()[0]:.1f}")
  for name in _PRESETS.value:
    _compare_preset(name, images, devices)
  if _PROFILE.value:
    _profile(images)


if __name__ == "__main__":
  app.run(main)
