"""No speed lost: `variations` of two versions of jaxvae (commits or the working tree), interleaved.

Ratios between separate runs move by about 10% on the 2-core hosts, so an A/B between versions
has to be measured in one run: each version is extracted into a temporary folder (`git archive
REV | tar -x`; nothing in the repository changes) and runs in a long-lived worker process that
imports that tree's jaxvae, with that tree's jaxvae.schedule XLA flags. Both workers load the
same random weights (written once by the first worker, read by the second), the same inputs and
the same key, compile everything, and then the parent alternates timed calls between them (one
works while the other waits on its pipe; the order flips every round, each call after a 0.2 s
pause). The worker started first measured 4-7% slower than the other with identical code on
both sides (`--old=HEAD`), so by default the whole run is done twice, each version started first
once, and the calls of both runs are pooled. Per model: images/s of each (medians of --rounds calls), new / old, the median of the
per-round paired ratios, and the max abs difference between the two versions' outputs.

Each tree runs `variations` as its own API does: the fast path (`fast.prepare_jit`) and the
model's default CPU chunk size, `schedule.default_chunk_size(backend, name)` before the
architecture change (bdb6925), `chunking.resolve(0, name)` after it. B=64 faces x K=10, fp32,
encode included, as benchmarks/generation.py.

  python benchmarks/ab_commits.py [--old=bdb6925] [--new=WORKTREE] [--models=...] [--rounds=21]
  python benchmarks/ab_commits.py --quick      # 5 rounds
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
WORKTREE = "WORKTREE"  # --old / --new: the checkout as it is, uncommitted changes included.
MODEL_NAMES = ("vanilla", "betavae", "dfcvae", "pvae")
# Module fields per model: the latent sizes benchmarks/generation.py runs (Beta-VAE: l200).
FIELDS = {"vanilla": {"latent_dim": 200}, "betavae": {"latent_dim": 200},
          "dfcvae": {"latent_dim": 100}, "pvae": {"latent_dim": 100}}
PAUSE_S = 0.2  # As benchmarks/common.PAUSE_S.


# ---------------------------------------------------------------------------- worker


def _weights(models, name, model, path: str, write: bool):
  """Random weights (tests/random_weights.py on flax's init) written to `path`, or read from it
  into this tree's variable tree (same names and shapes required)."""
  import jax  # pylint: disable=import-outside-toplevel
  variables = models.init_variables(model, jax.random.key(0))
  if write:
    sys.path.append(os.path.join(REPO, "tests"))
    from random_weights import randomize_flax  # pylint: disable=import-outside-toplevel
    variables = randomize_flax(variables, 0)
    flat = {jax.tree_util.keystr(p): np.asarray(a)
            for p, a in jax.tree_util.tree_flatten_with_path(variables)[0]}
    np.savez(path, **flat)
    return variables
  with np.load(path) as saved:
    stored = {k: saved[k] for k in saved.files}
  mine = {jax.tree_util.keystr(p): a for p, a in jax.tree_util.tree_flatten_with_path(variables)[0]}
  if set(mine) != set(stored) or any(mine[k].shape != stored[k].shape for k in mine):
    raise SystemExit(f"{name}: the two trees' variables differ in names or shapes")
  return jax.tree_util.tree_map_with_path(lambda p, a: stored[jax.tree_util.keystr(p)], variables)


def worker(args):
  """Imports --tree's jaxvae, compiles variations per model, then serves 'time NAME',
  'save NAME PATH' and 'quit' lines on stdin."""
  sys.path.insert(0, args.tree)
  from jaxvae import schedule  # pylint: disable=import-outside-toplevel  (no jax yet)
  flags = schedule.configure_xla_flags()
  import jax  # pylint: disable=import-outside-toplevel
  import jaxvae  # pylint: disable=import-outside-toplevel
  from jaxvae import fast, models, sampling  # pylint: disable=import-outside-toplevel
  if not os.path.realpath(jaxvae.__file__).startswith(os.path.realpath(args.tree) + os.sep):
    raise SystemExit(f"imported {jaxvae.__file__}, not the tree {args.tree}")
  try:
    from jaxvae import chunking  # pylint: disable=import-outside-toplevel
    chunk_of = lambda name: chunking.resolve(0, name)
  except ImportError:  # Before the architecture change (bdb6925).
    chunk_of = lambda name: schedule.default_chunk_size(jax.default_backend(), name)

  images = jax.random.uniform(jax.random.key(1), (args.batch, 64, 64, 3))
  key = jax.random.key(2)
  calls, info = {}, {"jaxvae": jaxvae.__file__, "flags_added": flags,
                     "devices": len(jax.local_devices()), "chunk": {}, "first_call_s": {}}
  built = {}
  for name in args.models.split(","):
    model = models.build(name, **FIELDS[name])
    path = os.path.join(args.weights, f"{name}.npz")
    built[name] = model, _weights(models, name, model, path, args.write_weights)
  if args.write_weights:
    print("weights", flush=True)  # All written: the other worker may start.
  for name, (model, variables) in built.items():
    prepared = jax.block_until_ready(fast.prepare_jit(model, variables))
    options = sampling.Options(chunk_size=chunk_of(name))
    calls[name] = (lambda m=model, p=prepared, o=options:
                   sampling.variations(m, p, images, key, args.variations, o).block_until_ready())
    start = time.perf_counter()
    calls[name]()
    info["first_call_s"][name] = round(time.perf_counter() - start, 2)
    info["chunk"][name] = options.chunk_size
  print("ready " + json.dumps(info), flush=True)
  for line in sys.stdin:
    parts = line.split()
    if not parts or parts[0] == "quit":
      break
    if parts[0] == "save":
      np.save(parts[2], np.asarray(calls[parts[1]]()))
      print("ok", flush=True)
      continue
    start = time.perf_counter()
    calls[parts[1]]()
    print(f"{time.perf_counter() - start:.6f}", flush=True)


# ---------------------------------------------------------------------------- parent


def extract(rev: str, tmp: str) -> tuple[str, str]:
  """(tree folder, description) of `rev`: the checkout itself for WORKTREE, else `git archive`
  extracted under `tmp`."""
  if rev == WORKTREE:
    dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, check=True).stdout.strip()
    head = _rev_parse("HEAD")
    return REPO, f"working tree (HEAD {head}{', with uncommitted changes' if dirty else ''})"
  commit = _rev_parse(rev)
  out = os.path.join(tmp, commit)
  os.makedirs(out)
  archive = subprocess.Popen(["git", "-C", REPO, "archive", "--format=tar", commit],
                             stdout=subprocess.PIPE)
  subprocess.run(["tar", "-x", "-C", out], stdin=archive.stdout, check=True)
  archive.stdout.close()
  if archive.wait():
    raise SystemExit(f"git archive {rev} failed")
  return out, f"{rev} ({commit})"


def _rev_parse(rev: str) -> str:
  out = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", f"{rev}^{{commit}}"],
                       capture_output=True, text=True)
  if out.returncode:
    raise SystemExit(f"unknown revision {rev!r}: {out.stderr.strip()}")
  return out.stdout.strip()


class Worker:
  """One worker process and its pipes."""

  def __init__(self, label: str, tree: str, args, weights: str, write: bool):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", f"--tree={tree}",
           f"--models={args.models}", f"--batch={args.batch}", f"--variations={args.variations}",
           f"--weights={weights}"] + (["--write-weights"] if write else [])
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "JAX_COMPILATION_CACHE_DIR")}
    self.label = label
    self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                 env=env, cwd=weights)

  def read(self, prefix: str = "") -> str:
    line = self.proc.stdout.readline()
    if not line or not line.startswith(prefix):
      raise SystemExit(f"worker {self.label} failed (exit {self.proc.poll()}): {line!r}")
    return line[len(prefix):].strip()

  def ask(self, command: str) -> str:
    self.proc.stdin.write(command + "\n")
    self.proc.stdin.flush()
    return self.read()

  def close(self):
    if self.proc.poll() is None:
      try:
        self.proc.stdin.write("quit\n")
        self.proc.stdin.flush()
        self.proc.wait(timeout=30)
      except (BrokenPipeError, subprocess.TimeoutExpired):
        self.proc.kill()


def run(args, tmp: str, trees: dict, start: str):
  """Times of both workers, `start` started first: ({(label, model): [s]}, {model: diff})."""
  weights = os.path.join(tmp, f"weights-{start}")
  os.makedirs(weights)
  first, second = ("old", "new") if start == "old" else ("new", "old")
  workers = {first: Worker(first, trees[first][0], args, weights, write=True)}
  workers[first].read("weights")  # Written: the other worker can read them.
  workers[second] = Worker(second, trees[second][0], args, weights, write=False)
  try:
    for label in ("old", "new"):
      info = json.loads(workers[label].read("ready "))
      print(f"[{start} first] {label}: {info['devices']} device(s), chunk sizes "
            f"{info['chunk']}, first calls {info['first_call_s']} s", flush=True)
    names = args.models.split(",")
    times = {(label, name): [] for label in workers for name in names}
    for r in range(args.rounds):
      for i, name in enumerate(names):
        for label in (("old", "new") if (r + i) % 2 == 0 else ("new", "old")):
          time.sleep(PAUSE_S)
          times[(label, name)].append(float(workers[label].ask(f"time {name}")))
    diffs = {}
    for name in names:
      outs = {}
      for label, w in workers.items():
        path = os.path.join(tmp, f"{label}-{name}.npy")
        w.ask(f"save {name} {path}")
        outs[label] = np.load(path)
      diffs[name] = float(np.abs(outs["old"] - outs["new"]).max())
  finally:
    for w in workers.values():
      w.close()
  return times, diffs


def report(args, trees, names, times, diffs):
  n_img = args.batch * args.variations
  print(f"\n## variations, B={args.batch} x K={args.variations}, images/s: medians of "
        f"{len(times[('old', names[0])])} interleaved calls (min..max; start order: "
        f"{args.start})\n")
  print(f"old: {trees['old'][1]}; new: {trees['new'][1]}\n")
  print("| model | old | new | new / old (of medians) | paired ratio: median (min..max) | "
        "max abs diff |")
  print("|---|---|---|---|---|---|")
  for name in names:
    old, new = np.asarray(times[("old", name)]), np.asarray(times[("new", name)])
    paired = old / new
    cell = lambda t: f"{n_img / np.median(t):.0f} ({n_img / t.max():.0f}..{n_img / t.min():.0f})"
    print(f"| {name} | {cell(old)} | {cell(new)} | **{np.median(old) / np.median(new):.3f}** | "
          f"{np.median(paired):.3f} ({paired.min():.3f}..{paired.max():.3f}) | "
          f"{diffs[name]:.1e} |")


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--old", default="bdb6925", help=f"a git revision or {WORKTREE}")
  ap.add_argument("--new", default=WORKTREE, help=f"a git revision or {WORKTREE} (default)")
  ap.add_argument("--models", default=",".join(MODEL_NAMES))
  ap.add_argument("--rounds", type=int, default=None, help="timed calls per version and model "
                                                           "(default 21; 5 with --quick)")
  ap.add_argument("--quick", action="store_true", help="a fast check: 5 rounds")
  ap.add_argument("--batch", type=int, default=64)
  ap.add_argument("--variations", type=int, default=10)
  ap.add_argument("--start", choices=("both", "new", "old"), default="both",
                  help="which worker starts first; both (default): a run of each order, pooled "
                       "(the first-started worker measured 4-7% slower with identical code)")
  ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
  ap.add_argument("--tree", help=argparse.SUPPRESS)
  ap.add_argument("--weights", help=argparse.SUPPRESS)
  ap.add_argument("--write-weights", action="store_true", help=argparse.SUPPRESS)
  args = ap.parse_args()
  if args.worker:
    return worker(args)
  unknown = set(args.models.split(",")) - set(MODEL_NAMES)
  if unknown:
    raise SystemExit(f"unknown model(s) {sorted(unknown)}; known: {', '.join(MODEL_NAMES)}")
  args.rounds = args.rounds or (5 if args.quick else 21)
  tmp = tempfile.mkdtemp(prefix="jaxvae-ab-")
  try:
    trees = {label: extract(rev, tmp) for label, rev in (("old", args.old), ("new", args.new))}
    for label, (tree, desc) in trees.items():
      print(f"{label}: {desc} at {tree}", flush=True)
    runs = [run(args, tmp, trees, start)
            for start in (("new", "old") if args.start == "both" else (args.start,))]
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  names = args.models.split(",")
  times = {k: [t for r in runs for t in r[0][k]] for k in runs[0][0]}
  diffs = {n: max(r[1][n] for r in runs) for n in names}
  report(args, trees, names, times, diffs)


if __name__ == "__main__":
  main()
