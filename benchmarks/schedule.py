"""Finds the CPU decode schedule: XLA flags x host devices x chunk size, for jaxvae's variations.

XLA_FLAGS are fixed when jax starts, so every flag setting runs in its own worker process; the
workers compile everything first and then take turns (round-robin, one timed call at a time), so
that load from other processes on the machine hits every setting alike. Prints img/s medians.
Chunk 0 is the whole batch in one step (sampling's meaning of chunk_size 0); the chunk sizes the
library runs by default are the registry's `cpu_chunk_size` (jaxvae.models, jaxvae.chunking),
which this script measures.

  python benchmarks/schedule.py [--models=dfcvae,vanilla] [--chunks=4,8,16,32] [--rounds=7]
      [--settings=default,ynn_dot,2dev_ynn_dot_1thread]
  python benchmarks/schedule.py --quick     # vanilla, chunks 8,16, two settings, 2 rounds
"""

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # pylint: disable=wrong-import-position

YNN_DOT = "--xla_cpu_experimental_ynn_fusion_type=dot"
TWO_DEVICES = "--xla_force_host_platform_device_count=2"
ONE_THREAD = "--xla_cpu_multi_thread_eigen=false"
SETTINGS = {
    "default": [],
    "ynn_dot": [YNN_DOT],
    "2dev_ynn_dot_1thread": [TWO_DEVICES, ONE_THREAD, YNN_DOT],
    "2dev_1thread": [TWO_DEVICES, ONE_THREAD],
    "2dev_ynn_dot": [TWO_DEVICES, YNN_DOT],
    "1dev_ynn_dot_1thread": [ONE_THREAD, YNN_DOT],
}

# Options that --quick changes: (full run, --quick).
DEFAULTS = {"models": ("dfcvae", "vanilla"), "chunks": ("4,8,16,32", "8,16"),
            "settings": ("default,ynn_dot,2dev_ynn_dot_1thread,2dev_1thread",
                         "ynn_dot,2dev_ynn_dot_1thread"),
            "rounds": (7, 2)}


def worker(models_arg: str, chunks_arg: str, batch: int, num: int, paths: str):
  """Compiles variations for every (model, chunk, path), then times one call per stdin line."""
  import jax
  from jaxvae import fast, models, sampling
  names = models_arg.split(",")
  chunks = [int(c) for c in chunks_arg.split(",")]
  setups = {}
  for name in names:
    model = models.build(name)
    variables = common.randomize_flax(models.init_variables(model, jax.random.key(0)), 0)
    setups[name] = (model, variables, fast.prepare_jit(model, variables))
  images = jax.random.uniform(jax.random.key(1), (batch, 64, 64, 3))
  key = jax.random.key(2)

  def call(name, chunk, path):
    model, variables, prepared = setups[name]
    if path == "sample":  # Not sharded: one device decodes all B*K prior samples.
      return sampling.sample(model, prepared, key, batch * num, chunk_size=chunk).block_until_ready()
    return sampling.variations(model, prepared if path == "fast" else variables, images, key, num,
                               sampling.Options(chunk_size=chunk)).block_until_ready()

  compile_s = {}
  for name in names:
    for chunk in chunks:
      for path in paths.split(","):
        start = time.perf_counter()
        call(name, chunk, path)
        compile_s[f"{name}/{chunk}/{path}"] = round(time.perf_counter() - start, 2)
  print("ready " + json.dumps({"devices": len(jax.local_devices()), "compile_s": compile_s}),
        flush=True)
  for line in sys.stdin:
    parts = line.split()
    if not parts or parts[0] == "quit":
      break
    start, cpu = time.perf_counter(), time.process_time()
    call(parts[0], int(parts[1]), parts[2])
    print(f"{time.perf_counter() - start:.6f} {time.process_time() - cpu:.6f}", flush=True)


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--quick", action="store_true",
                  help="a fast check: " + ", ".join(f"--{k}={v[1]}" for k, v in DEFAULTS.items())
                       + " unless given")
  ap.add_argument("--models", help=f"default {DEFAULTS['models'][0]}")
  ap.add_argument("--chunks",
                  help=f"images per step (0 = whole batch); default {DEFAULTS['chunks'][0]}")
  ap.add_argument("--settings", help=f"of {', '.join(SETTINGS)}; default {DEFAULTS['settings'][0]}")
  ap.add_argument("--paths", default="fast",
                  help="fast (variations), ref (variations on the reference modules), sample "
                       "(sampling.sample of B*K images on the fast path: one device, not sharded)")
  ap.add_argument("--rounds", type=int, help=f"default {DEFAULTS['rounds'][0]}")
  ap.add_argument("--batch", type=int, default=64)
  ap.add_argument("--variations", type=int, default=10)
  ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
  args = ap.parse_args()
  for name, (full, quick) in DEFAULTS.items():
    if getattr(args, name) is None:
      setattr(args, name, quick if args.quick else full)
  if args.worker:
    return worker(args.models, args.chunks, args.batch, args.variations, args.paths)

  workers = {}
  for label in args.settings.split(","):
    env = {**os.environ, "XLA_FLAGS": " ".join(SETTINGS[label]), "JAXVAE_XLA_FLAGS": "0"}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    workers[label] = subprocess.Popen(
        [sys.executable, __file__, "--worker", f"--models={args.models}", f"--chunks={args.chunks}",
         f"--batch={args.batch}", f"--variations={args.variations}", f"--paths={args.paths}"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
  info = {}
  for label, proc in workers.items():  # Compiling in parallel is fine: not timed.
    line = proc.stdout.readline()
    if not line.startswith("ready "):
      raise SystemExit(f"worker {label} failed: {line}")
    info[label] = json.loads(line[6:])
    print(f"{label}: {' '.join(SETTINGS[label]) or '(no flags)'}: {info[label]['devices']} device(s); "
          f"first calls (compile) {info[label]['compile_s']}", flush=True)

  cases = [(m, int(c), p) for m in args.models.split(",") for c in args.chunks.split(",")
           for p in args.paths.split(",")]
  times = {(label, *case): [] for label in workers for case in cases}
  cpu_times = {(label, *case): [] for label in workers for case in cases}
  for r in range(args.rounds):
    for case in cases:
      labels = list(workers)
      labels = labels[r % len(labels):] + labels[:r % len(labels)]
      for label in labels:
        proc = workers[label]
        proc.stdin.write(" ".join(map(str, case)) + "\n")
        proc.stdin.flush()
        wall, cpu = map(float, proc.stdout.readline().split())
        times[(label, *case)].append(wall)
        cpu_times[(label, *case)].append(cpu)
  for proc in workers.values():
    proc.stdin.write("quit\n")
    proc.stdin.flush()
    proc.wait()

  n_img = args.batch * args.variations
  print(f"\nvariations B={args.batch} x K={args.variations}: images/s, median of {args.rounds} "
        "interleaved rounds (min..max); [images per CPU-second of the process]")
  print("| model | path | chunk | " + " | ".join(workers) + " |")
  print("|---|---|---|" + "---|" * len(workers))
  for case in cases:
    cells = []
    for label in workers:
      ts = times[(label, *case)]
      cpu = common.median(cpu_times[(label, *case)])
      cells.append(f"{n_img / common.median(ts):.0f} ({n_img / max(ts):.0f}..{n_img / min(ts):.0f})"
                   f" [{n_img / cpu:.0f}]")
    print(f"| {case[0]} | {case[2]} | {case[1]} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
  main()
