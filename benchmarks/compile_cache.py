"""What JAX's persistent compilation cache saves on the first call of a mode, in fresh processes.

Each measurement is a new Python process (as repeated runs of main.py are): load a checkpoint,
make a `jaxvae.api.VAE` of it (folds the weights for the fast path, jaxvae.fast.prepare_jit, and
resolves the model's chunk size, jaxvae.chunking.resolve), then the first calls of its
reconstruct and variations (B faces x K), with jaxvae.schedule's XLA flags. Runs:
  no cache | cache, cold (empty dir) | cache, warm (same dir again)
for the default thresholds (only compiles over 1 s are written) and for
jax_persistent_cache_min_compile_time_secs=0 (everything written). Then `main.py --mode=variations`
end to end, with main.py's own cache (jaxvae.schedule.enable_compilation_cache) pointed at a
fresh directory through JAXVAE_COMPILATION_CACHE (0 turns it off).

  python benchmarks/compile_cache.py [--model=betavae] [--main]
  python benchmarks/compile_cache.py --quick    # no main.py runs, B=16
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

START = time.perf_counter()
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import common  # pylint: disable=wrong-import-position
from jaxvae import schedule  # pylint: disable=wrong-import-position


def child(ckpt: str, cache_dir: str, min_compile_s: float | None, batch: int, num: int):
  schedule.configure_xla_flags()
  t_import = time.perf_counter()
  import jax
  if cache_dir:
    jax.config.update("jax_compilation_cache_dir", cache_dir)
    if min_compile_s is not None:
      jax.config.update("jax_persistent_cache_min_compile_time_secs", min_compile_s)
      jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  from jaxvae import api, checkpoint
  times = {"import": time.perf_counter() - t_import}

  def timed(label, fn):
    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    times[label] = time.perf_counter() - start
    return out

  loaded = timed("load checkpoint", lambda: checkpoint.load(ckpt))
  start = time.perf_counter()
  vae = api.VAE(loaded.metadata["model"], loaded.model, loaded.variables, loaded.metadata, ckpt)
  jax.block_until_ready(vae.params)
  times["prepare (first call)"] = time.perf_counter() - start
  images = jax.random.uniform(jax.random.key(0), (batch, 64, 64, 3))
  timed("reconstruct (first call)", lambda: vae.reconstruct(images))
  run = lambda: vae.variations(images, num, seed=1)
  timed("variations (first call)", run)
  timed("variations (second call)", run)
  times["process total"] = time.perf_counter() - START
  print("RESULT " + json.dumps(times), flush=True)


def _port(model: str, out: str) -> str:
  """An Orbax checkpoint for `model`: the published l200 Beta-VAE, random weights otherwise."""
  if model == "betavae" and os.path.exists(common.BETAVAE_L200):
    from port import api
    return api.port("betavae", common.BETAVAE_L200, out).out_dir
  import jax
  from jaxvae import checkpoint, models
  m = models.build(model)
  variables = common.randomize_flax(models.init_variables(m, jax.random.key(0)), 0)
  return checkpoint.save(out, model, m, variables)


def run_child(ckpt, cache_dir, min_compile_s, args) -> dict:
  cmd = [sys.executable, __file__, "--child", f"--ckpt={ckpt}", f"--cache-dir={cache_dir or ''}",
         f"--batch={args.batch}", f"--variations={args.variations}"]
  if min_compile_s is not None:
    cmd.append(f"--min-compile-s={min_compile_s}")
  env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMPILATION_CACHE")}
  start = time.perf_counter()
  out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
  result = json.loads(next(l for l in out.stdout.splitlines() if l.startswith("RESULT "))[7:])
  result["wall (outside)"] = time.perf_counter() - start
  return result


def dir_size(path: str) -> tuple[int, int]:
  files = [os.path.join(r, f) for r, _, fs in os.walk(path) for f in fs]
  return len(files), sum(os.path.getsize(f) for f in files)


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--model", default="betavae")
  ap.add_argument("--batch", type=int, default=None, help="faces B (default 64; 16 with --quick)")
  ap.add_argument("--variations", type=int, default=10)
  ap.add_argument("--main", action=argparse.BooleanOptionalAction, default=None,
                  help="also time main.py --mode=variations end to end (default on)")
  ap.add_argument("--quick", action="store_true",
                  help="a fast check: B=16 and no main.py runs unless given")
  ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
  ap.add_argument("--ckpt", help=argparse.SUPPRESS)
  ap.add_argument("--cache-dir", default="", help=argparse.SUPPRESS)
  ap.add_argument("--min-compile-s", type=float, default=None, help=argparse.SUPPRESS)
  args = ap.parse_args()
  if args.main is None:
    args.main = not args.quick
  args.batch = args.batch or (16 if args.quick else 64)
  if args.child:
    return child(args.ckpt, args.cache_dir, args.min_compile_s, args.batch, args.variations)

  tmp = tempfile.mkdtemp(prefix="jaxvae-cache-bench-")
  try:
    ckpt = _port(args.model, os.path.join(tmp, "ckpt"))
    rows = {"no cache": run_child(ckpt, None, None, args)}
    for label, min_s in (("default thresholds", None), ("min_compile_time 0", 0.0)):
      cache = os.path.join(tmp, "cache-" + label.replace(" ", "_"))
      rows[f"cache cold, {label}"] = run_child(ckpt, cache, min_s, args)
      n, size = dir_size(cache)
      rows[f"cache warm, {label}"] = run_child(ckpt, cache, min_s, args)
      rows[f"cache warm, {label}"]["entries"] = f"{n} files, {size / 1e6:.1f} MB"
    keys = ["import", "load checkpoint", "prepare (first call)", "reconstruct (first call)",
            "variations (first call)", "variations (second call)", "process total"]
    print(f"\n## First calls in a fresh process, seconds ({args.model}, B={args.batch} x "
          f"K={args.variations}, fast path, XLA_FLAGS from jaxvae.schedule)\n")
    print("| run | " + " | ".join(keys) + " | cache entries |")
    print("|---|" + "---|" * (len(keys) + 1))
    for label, r in rows.items():
      print(f"| {label} | " + " | ".join(f"{r[k]:.2f}" for k in keys) + f" | {r.get('entries', '')} |")

    if args.main:
      config = os.path.join(common.REPO, "configs", f"{args.model}.py")
      print("\nmain.py --mode=variations end to end, wall seconds:")
      cache = os.path.join(tmp, "cache-main")
      for label, env in (("no cache", {"JAXVAE_COMPILATION_CACHE": "0"}),
                         ("cache cold", {"JAXVAE_COMPILATION_CACHE": cache}),
                         ("cache warm", {"JAXVAE_COMPILATION_CACHE": cache})):
        workdir = os.path.join(tmp, "work-" + label.replace(" ", "_"))
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "main.py", f"--config={config}", "--mode=variations",
                              f"--workdir={workdir}", f"--config.checkpoint={ckpt}"],
                             cwd=common.REPO, capture_output=True, text=True,
                             env={**os.environ, **env})
        status = "ok" if out.returncode == 0 else f"failed: {out.stderr[-300:]}"
        print(f"  {label}: {time.perf_counter() - start:.2f} s ({status})")
  finally:
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
  main()
