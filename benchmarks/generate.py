"""--mode=generate end to end vs the `variations` engine alone, side by side in one run; peak RSS.

For each model (random weights; Beta-VAE from the shared l200 checkpoint when present), on a fake
CelebA tree of --sources JPEGs (178x218, as CelebA; tests/fake_celeba.py, written to a temporary
folder and deleted after):
  - engine: `jaxvae.sampling.variations` on a batch of B preprocessed faces x K, repeated for as
    many images as the run generates (block_until_ready; no reading, no writing);
  - generate: `jaxvae.generate.generate` over the tree into a fresh folder: reading, JPEG decode,
    crop and resize, the engine, records (raw uint8, the default), ArrayRecord writes, sha256,
    fsync, manifest, sources read by the default reader for this host's cores (threads below
    4, processes from 4); the same with the other reader kind (--other-reader), and with
    PNG-encoded images inside the records (--png).
All take turns for --repeats rounds (medians). Printed: images/s and generate / engine, in wall
time and in CPU time per image (all threads and reading processes; what a run costs the cores
whatever else the machine runs, so comparable on a shared host), and where the rest goes: the
pipeline's per-stage seconds, and each host stage timed alone in thread CPU time.
--rss: peak RSS of `main.py --mode=generate` in fresh processes for --rss-sizes sources.
--devices-check: main.py runs with 1, 2 and 4 host devices and several batch sizes: how many
images are byte-identical, and the largest difference of the float latents.
--host-only: generate with the engine replaced by ready outputs (no device work): the host
pipeline's ceiling in images/s, with each reader kind, and with reading replaced by a ready image
too (what the main, writer and commit threads alone sustain: stages that do not scale with
cores). Where the engine outruns these (an accelerator), they bound generate.

  python benchmarks/generate.py [--models=vanilla,betavae,dfcvae,pvae] [--sources=2048]
      [--repeats=3] [--no-other-reader] [--no-png] [--rss] [--rss-sizes=1000,20000] [--devices-check]
      [--no-ratio] [--host-only]
"""

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import types
from unittest import mock

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # pylint: disable=wrong-import-position  (imports no jax)
from jaxvae import schedule  # pylint: disable=wrong-import-position  (imports no jax)


def parse_args():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--models", default=",".join(common.MODEL_NAMES))
  ap.add_argument("--sources", type=int, default=2048, help="source JPEGs per run")
  ap.add_argument("--batch", type=int, default=64, help="sources per compiled call B")
  ap.add_argument("--variations", type=int, default=10, help="variations K")
  ap.add_argument("--repeats", type=int, default=3)
  ap.add_argument("--other-reader", action=argparse.BooleanOptionalAction, default=True,
                  help="also time generate with the reader kind that is not the default here")
  ap.add_argument("--png", action=argparse.BooleanOptionalAction, default=True,
                  help="also time PNG-encoded images inside the records")
  ap.add_argument("--rss", action="store_true", help="measure peak RSS for --rss-sizes")
  ap.add_argument("--rss-sizes", default="1000,20000")
  ap.add_argument("--rss-model", default="betavae")
  ap.add_argument("--rss-repeats", type=int, default=3, help="fresh processes per size")
  ap.add_argument("--ratio", action=argparse.BooleanOptionalAction, default=True,
                  help="time generate against the engine")
  ap.add_argument("--host-only", action="store_true",
                  help="the host pipeline's ceiling: generate with the engine's outputs ready")
  ap.add_argument("--devices-check", action="store_true",
                  help="compare records across host device counts and batch sizes")
  ap.add_argument("--tmp", default=None, help="scratch folder (default: the system's)")
  return ap.parse_args()


# generate's reading processes (spawned) import this file again as __mp_main__ and need none of
# it: skipping the rest keeps jax out of them, as it is out of them under main.py.
if __name__ != "__mp_main__":
  ARGS = parse_args()
  schedule.configure_xla_flags()

  import jax  # pylint: disable=wrong-import-position
  import numpy as np  # pylint: disable=wrong-import-position

  import fake_celeba  # pylint: disable=wrong-import-position  (tests/, on the path via common)
  # pylint: disable=wrong-import-position
  from jaxvae import api, checkpoint, models, sampling
  from jaxvae.generate import generate, pipeline, readers, shards, sources

  jax.config.update("jax_compilation_cache_dir", None)


def log(msg=""):
  print(msg, flush=True)


def make_checkpoint(name: str, out: str) -> str:
  """Random weights (BatchNorm statistics too); the shared Beta-VAE l200 when present."""
  if name == "betavae" and os.path.exists(common.BETAVAE_L200):
    from port import api as port_api  # pylint: disable=import-outside-toplevel
    port_api.port("betavae", common.BETAVAE_L200, out, log=lambda s: None)
    return out
  model = models.build(name)
  variables = common.randomize_flax(models.init_variables(model, jax.random.key(0)), 0)
  return checkpoint.save(out, name, model, variables)


def time_stages_alone(vae, src, n: int = 128) -> dict:
  """Per-unit CPU time of each host stage run alone, one thread (microseconds of thread time:
  what it costs the two cores, whatever else runs on the machine)."""
  t = time.thread_time()
  images = np.stack([src.load(i) for i in range(n)])
  read_us = (time.thread_time() - t) / n * 1e6
  batch = images[:ARGS.batch]
  out = sampling.keyed_variations(vae.model, vae.params, batch,
                                  jax.random.split(jax.random.key(0), len(batch)),
                                  ARGS.variations, vae.options(), as_uint8=True)
  faces = np.asarray(out.images)  # [B, K, 64, 64, 3]
  costs = {"read+decode+crop+resize per source": read_us}
  for enc in shards.IMAGE_ENCODINGS:
    with tempfile.TemporaryDirectory(dir=ARGS.tmp) as d:
      shard = shards.open_shard(d, "s", shards.Layout("array_record", enc, 0, True))
      per_image = 1e6 / (faces.shape[0] * faces.shape[1])
      t = time.thread_time()
      for b in range(faces.shape[0]):
        shard.add(src.ids[b], faces[b], None, src.attributes[b])
      costs[f"record ({enc}) + ArrayRecord write per image"] = (time.thread_time() - t) * per_image
      t = time.thread_time()
      shard.commit()
      costs[f"close + fsync + sha256 + rename per image ({enc})"] = (
          (time.thread_time() - t) * per_image)
  return costs


def bench_model(name: str, ckpt: str, tree: str, scratch: str) -> dict:
  vae = api.load(ckpt)
  box = models.get_info(name).celeba_box
  src = sources.open_celeba(tree, "all", box, ARGS.sources)
  n_images = len(src.ids) * ARGS.variations
  x = np.stack([src.load(i) for i in range(ARGS.batch)])
  key, steps = jax.random.key(0), -(-len(src.ids) // ARGS.batch)

  def engine():
    for _ in range(steps):
      out = sampling.variations(vae.model, vae.params, x, key, ARGS.variations, vae.options())
    out.block_until_ready()

  summaries = {}

  def run_generate(enc, reader="auto"):
    def fn():
      out = os.path.join(scratch, f"out-{name}-{enc}")
      shutil.rmtree(out, ignore_errors=True)
      summaries.setdefault(f"{enc}, {reader} readers", []).append(generate(
          vae, src, out, ARGS.variations, batch_size=ARGS.batch, image_encoding=enc,
          reader=reader, log=lambda s: None)[f"process_{jax.process_index()}"])
    return fn

  # "generate raw": the default (config.generate.reader=auto); the other reader kind beside it.
  default = "processes" if (os.cpu_count() or 1) >= readers.PROCESSES_FROM else "threads"
  fns = {"engine": engine, "generate raw": run_generate("raw", default)}
  if ARGS.other_reader:
    other = {"processes": "threads", "threads": "processes"}[default]
    fns[f"generate raw, reading {other}"] = run_generate("raw", other)
  if ARGS.png:
    fns["generate png-in-record"] = run_generate("png")
  for fn in fns.values():  # Warm-up: compiles.
    fn()
  summaries.clear()
  wall, cpu = interleaved(fns, ARGS.repeats)
  rates = {k: n_images / common.median(v) for k, v in wall.items()}
  cpu_us = {k: common.median(v) / n_images * 1e6 for k, v in cpu.items()}
  stages = {enc: stage_medians(v) for enc, v in summaries.items()}
  return {"rates": rates, "cpu_us": cpu_us, "stages": stages,
          "alone": time_stages_alone(vae, src), "images": n_images}


def stage_medians(summaries: list[dict]) -> dict[str, float]:
  """Each pipeline stage's median seconds over generate runs' summaries."""
  return {k: float(np.median([s["stage_seconds"].get(k, 0) for s in summaries]))
          for k in summaries[0]["stage_seconds"]}


def _cpu_seconds() -> float:
  """CPU time of this process (all threads) and of its reaped children (reading processes)."""
  children = resource.getrusage(resource.RUSAGE_CHILDREN)
  return time.process_time() + children.ru_utime + children.ru_stime


def interleaved(fns: dict, repeats: int) -> tuple[dict, dict]:
  """Wall and CPU seconds (all threads, reading processes included) of each fn over `repeats`
  rounds, order rotating, each call after common.PAUSE_S idle."""
  labels = list(fns)
  wall, cpu = {k: [] for k in labels}, {k: [] for k in labels}
  for r in range(repeats):
    for k in labels[r % len(labels):] + labels[:r % len(labels)]:
      time.sleep(common.PAUSE_S)
      w, c = time.perf_counter(), _cpu_seconds()
      fns[k]()
      wall[k].append(time.perf_counter() - w)
      cpu[k].append(_cpu_seconds() - c)
  return wall, cpu


def peak_rss(model: str, ckpt: str, tree: str, n: int, scratch: str) -> tuple[float, float]:
  """(peak RSS in MiB, seconds) of main.py --mode=generate over n sources, a fresh process."""
  out = os.path.join(scratch, f"rss-{n}")
  shutil.rmtree(out, ignore_errors=True)
  # VmHWM, not getrusage's ru_maxrss: Linux carries the parent's peak across fork and exec into
  # ru_maxrss, so a child of this (large) process would report the parent's peak.
  code = ("import re, runpy, sys\n"
          f"sys.argv = ['main.py', '--config=configs/{model}.py', '--mode=generate', "
          f"'--workdir={out}', '--config.checkpoint={ckpt}', '--config.celeba={tree}', "
          f"'--config.split=all', '--config.generate.max_images={n}']\n"
          "try:\n  runpy.run_path('main.py', run_name='__main__')\n"
          "except SystemExit as e:\n  assert not e.code, e.code\n"
          "print('RSS', re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())[1])\n")
  t = time.perf_counter()
  proc = subprocess.run([sys.executable, "-c", code], cwd=common.REPO, capture_output=True,
                        text=True, env={**os.environ, "JAXVAE_COMPILATION_CACHE": "0"})
  if proc.returncode:
    raise RuntimeError(proc.stderr[-3000:])
  rss = int(proc.stdout.split("RSS")[-1]) / 1024
  return rss, time.perf_counter() - t


DEVICE_RUNS = ((2, 64), (1, 32), (4, 128), (1, 64), (2, 32))  # (host devices, batch); 1st = ref


def devices_check(model: str, ckpt: str, tree: str, scratch: str, n: int = 256) -> None:
  """main.py --mode=generate with several host device counts and batch sizes (same records):
  how many images are byte-identical to the first run's, and the largest latent difference."""
  from jaxvae import generated  # pylint: disable=import-outside-toplevel
  runs = {}
  for devices, batch in DEVICE_RUNS:
    out = os.path.join(scratch, f"devices-{model}-{devices}-{batch}")
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
           "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(
        [sys.executable, "main.py", f"--config=configs/{model}.py", "--mode=generate",
         f"--workdir={out}", f"--config.checkpoint={ckpt}", f"--config.celeba={tree}",
         "--config.split=all", f"--config.generate.max_images={n}", f"--config.batch_size={batch}",
         "--config.generate.save_latents=True"], cwd=common.REPO, env=env, capture_output=True,
        text=True)
    if proc.returncode:
      raise RuntimeError(proc.stderr[-3000:])
    source = generated.open(out)
    runs[devices, batch] = [source[i] for i in range(len(source))]
  ref = runs[DEVICE_RUNS[0]]
  for key, records in runs.items():
    same = sum(np.array_equal(a["image"], b["image"]) for a, b in zip(ref, records))
    levels = max(int(np.abs(a["image"].astype(int) - b["image"]).max())
                 for a, b in zip(ref, records))
    diffs = {f: max(float(np.abs(a[f] - b[f]).max()) for a, b in zip(ref, records))
             for f in ("mean", "logvar", "z")}
    log(f"{model}, {key[0]} host devices, batch {key[1]} (per device {key[1] // key[0]}) vs "
        f"{DEVICE_RUNS[0][0]} devices, batch {DEVICE_RUNS[0][1]}: {same}/{len(ref)} images "
        f"byte-identical (max {levels} levels apart); latents max abs diff " +
        ", ".join(f"{f} {v:.1e}" for f, v in diffs.items()))


def host_only(name: str, ckpt: str, tree: str, scratch: str) -> None:
  """generate with the engine's outputs ready (and, last, the sources' images too): images/s,
  CPU-us per source and the pipeline's stage seconds, medians of --repeats interleaved runs."""
  vae = api.load(ckpt)
  src = sources.open_celeba(tree, "all", models.get_info(name).celeba_box, ARGS.sources)
  ready = sampling.Generated(jax.device_put(np.zeros(
      (ARGS.batch, ARGS.variations, 64, 64, 3), np.uint8)), None, None, None)
  image = src.load(0)
  no_decode = src._replace(load=lambda i: image)  # Threads only: a lambda does not pickle.
  engine = types.SimpleNamespace(keyed_variations=lambda *args, **kwargs: ready)
  summaries = {}

  def run(label, source, reader):
    def fn():
      out = os.path.join(scratch, f"host-{name}")
      shutil.rmtree(out, ignore_errors=True)
      with mock.patch.object(pipeline, "sampling", engine):
        summary = generate(vae, source, out, ARGS.variations, batch_size=ARGS.batch,
                           reader=reader, log=lambda s: None)
      summaries.setdefault(label, []).append(summary[f"process_{jax.process_index()}"])
    return fn

  fns = {f"reading {kind}": run(f"reading {kind}", src, kind) for kind in ("threads", "processes")}
  fns["no reading (a ready image)"] = run("no reading (a ready image)", no_decode, "threads")
  for fn in fns.values():
    fn()
  summaries.clear()
  wall, cpu = interleaved(fns, ARGS.repeats)
  n = len(src.ids)
  log(f"\n{name}, host only (the engine's outputs ready), {n} sources x {ARGS.variations}, "
      f"batch {ARGS.batch}, {os.cpu_count()} CPUs:")
  for label in fns:
    stages = stage_medians(summaries[label])
    rate = n * ARGS.variations / common.median(wall[label])
    log(f"  {label}: {rate:.0f} images/s ({rate * 64 * 64 * 3 / 1e9:.2f} GB/s of raw images), "
        f"{common.median(cpu[label]) / n * 1e6:.0f} CPU-us per source; stages (s): "
        + ", ".join(f"{k} {v:.2f}" for k, v in stages.items()))


def report(name: str, r: dict) -> None:
  log(f"\n{name}: {r['images']} images; " + ", ".join(
      f"{k} {v:.0f} images/s ({r['cpu_us'][k]:.0f} CPU-us per image)"
      for k, v in r["rates"].items()))
  for k, v in r["rates"].items():
    log(f"  {k} / engine: wall {v / r['rates']['engine']:.0%}, CPU time "
        f"{r['cpu_us']['engine'] / r['cpu_us'][k]:.0%}")
  for enc, st in r["stages"].items():
    log(f"  stages, {enc} (s per run of {r['images']} images): " +
        ", ".join(f"{k} {v:.2f}" for k, v in st.items()))
  log("  alone, one thread: " + ", ".join(f"{k} {v:.1f} us" for k, v in r["alone"].items()))


def main():
  log(f"jax {jax.__version__}, devices {jax.local_devices()}, XLA_FLAGS "
      f"{os.environ.get('XLA_FLAGS', '')}, {os.cpu_count()} CPUs, load {os.getloadavg()}")
  scratch = tempfile.mkdtemp(prefix="jaxvae-bench-generate-", dir=ARGS.tmp)
  try:
    sizes = [int(s) for s in ARGS.rss_sizes.split(",")] if ARGS.rss else []
    n_tree = max([ARGS.sources] + sizes)
    t = time.perf_counter()
    tree = os.path.join(scratch, "celeba")
    fake_celeba.write_fake_celeba(tree, n=n_tree)
    log(f"wrote {n_tree} fake CelebA JPEGs in {time.perf_counter() - t:.0f} s")
    names = ARGS.models.split(",")
    ckpts = {name: make_checkpoint(name, os.path.join(scratch, f"ckpt-{name}"))
             for name in set(names) | ({ARGS.rss_model} if sizes else set())}
    if ARGS.ratio:
      results = {}
      for name in names:  # Each model's report as soon as it is measured.
        results[name] = bench_model(name, ckpts[name], tree, scratch)
        report(name, results[name])
      table(results)
    if ARGS.host_only:
      for name in names:
        host_only(name, ckpts[name], tree, scratch)
    if ARGS.devices_check:
      for name in names:
        devices_check(name, ckpts[name], tree, scratch)
    for n in sizes:  # The peak moves by a few % with timing (buffers alive at once): repeats.
      runs = [peak_rss(ARGS.rss_model, ckpts[ARGS.rss_model], tree, n, scratch)
              for _ in range(ARGS.rss_repeats)]
      rss = sorted(r for r, _ in runs)
      log(f"peak RSS, {ARGS.rss_model}, {n} sources x 10: median {common.median(rss):.0f} MiB "
          f"(runs {', '.join(f'{r:.0f}' for r in rss)}; {runs[0][1]:.0f} s each)")
  finally:
    shutil.rmtree(scratch, ignore_errors=True)


def table(results: dict) -> None:
  log("\n| model | engine alone (images/s) | generate, raw records | generate / engine (wall) "
      "| engine / generate CPU time per image | generate, PNG in records | PNG / engine (wall) |")
  log("|---|---|---|---|---|---|---|")
  for name, r in results.items():
    rates, e, cpu = r["rates"], r["rates"]["engine"], r["cpu_us"]
    png = rates.get("generate png-in-record")
    log(f"| {name} | {e:.0f} | {rates['generate raw']:.0f} | {rates['generate raw'] / e:.0%} | "
        f"{cpu['engine'] / cpu['generate raw']:.0%} | "
        + (f"{png:.0f} | {png / e:.0%} |" if png else "- | - |"))


if __name__ == "__main__":
  main()
