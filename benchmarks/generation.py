"""Generation speed, side by side: the torch originals vs jaxvae's `variations`, in one run.

For each model, on the same B faces and the same noise (B x K variations, encode included):
  - torch original, straightforward: eval, inference_mode, NCHW, one batch;
  - torch original, best configuration: channels_last or not x chunk size, searched;
  - torch with jaxvae's exact reformulation (folded BN, phase convs, dense1), best layout x chunk;
  - ONNX Runtime on the torch originals exported with torch.onnx.export (benchmarks/onnx_peer.py),
    best chunk size (--onnx; needs onnxruntime==1.31.1 and onnx==1.23.2);
  - jaxvae.sampling.variations on the fast path (jaxvae/fast/, one recipe per model), with the
    model's default chunk size (jaxvae.chunking.resolve(0, name), as jaxvae.api runs it) and with
    the best chunk size found here;
  - jaxvae.sampling.variations on the reference flax modules (--reference), for scale.
Warm-up first, then all configurations take turns for --repeats rounds (load from other
processes hits them alike); medians. Outputs are compared (max abs diff on [0, 1] images).
Also: the machine's matmul peak (XLA and torch, fp32), FLOPs per image of the original
formulation, achieved GFLOP/s, first-call (compile) times, and the post-processing chain batched in
JAX vs per image in OpenCV/PIL. A Markdown table comes last.

  python benchmarks/generation.py [--models=vanilla,betavae,dfcvae,pvae] [--repeats=7]
  python benchmarks/generation.py --quick     # 3 rounds, small searches, no extras

XLA_FLAGS: unless JAXVAE_XLA_FLAGS=0, the script adds jaxvae.schedule's CPU flags to XLA_FLAGS
before importing jax (--xla_cpu_experimental_ynn_fusion_type=dot, and on a multi-core machine
--xla_force_host_platform_device_count=N --xla_cpu_multi_thread_eigen=false; --host-devices
overrides N). Flags already in XLA_FLAGS are kept. The persistent compilation cache is off here,
so first calls show the real compile time (benchmarks/compile_cache.py measures the cache).
"""

import argparse
import copy
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # pylint: disable=wrong-import-position  (imports no jax)
from jaxvae import schedule  # pylint: disable=wrong-import-position  (imports no jax)


# Defaults of the options that --quick changes: (full run, --quick).
SEARCH_DEFAULTS = {"repeats": (7, 3), "torch_chunks": ("4,8,16,32,64,128,0", "16,64,0"),
                   "jax_chunks": ("8,16,32", ""), "reference": (True, False),
                   "postprocess_images": (128, 0)}


def parse_args():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--models", default=",".join(common.MODEL_NAMES))
  ap.add_argument("--quick", action="store_true",
                  help="a fast check: " + ", ".join(
                      f"{k}={v[1]!r}" for k, v in SEARCH_DEFAULTS.items()) + " unless given")
  ap.add_argument("--repeats", type=int, help="timed rounds (medians); default 7")
  ap.add_argument("--batch", type=int, default=64, help="faces B")
  ap.add_argument("--variations", type=int, default=10, help="variations K per face")
  ap.add_argument("--torch-chunks",
                  help="torch and ONNX Runtime chunk sizes to search (0 = one batch); default "
                       "4,8,16,32,64,128,0")
  ap.add_argument("--jax-chunks", help="jaxvae chunk sizes to search besides the model's default "
                                       "(default 8,16,32; '' = none)")
  ap.add_argument("--host-devices", type=int, default=None,
                  help="CPU host devices for jaxvae (default: jaxvae.schedule's choice)")
  ap.add_argument("--reference", action=argparse.BooleanOptionalAction, default=None,
                  help="also time jaxvae on the reference flax modules (default on)")
  ap.add_argument("--onnx", action=argparse.BooleanOptionalAction, default=True,
                  help="also time ONNX Runtime on the exported torch originals")
  ap.add_argument("--ort-threads", type=int, default=None,
                  help="ONNX Runtime intra-op threads (default: the cores, as torch)")
  ap.add_argument("--postprocess-images", type=int, default=None,
                  help="images for the post-processing comparison (0 = skip; default 128)")
  args = ap.parse_args()
  for name, (full, quick) in SEARCH_DEFAULTS.items():
    if getattr(args, name) is None:
      setattr(args, name, quick if args.quick else full)
  return args


def int_list(text: str) -> list[int]:
  return [int(c) for c in text.split(",") if c.strip()]


ARGS = parse_args()
FLAGS_ADDED = schedule.configure_xla_flags(host_devices=ARGS.host_devices)

import jax  # pylint: disable=wrong-import-position
import jax.numpy as jnp  # pylint: disable=wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position
import torch  # pylint: disable=wrong-import-position

from jaxvae import chunking, fast, models, sampling  # pylint: disable=wrong-import-position

import onnx_peer  # pylint: disable=wrong-import-position  (imports onnxruntime lazily)

jax.config.update("jax_compilation_cache_dir", None)
median = common.median


def log(msg=""):
  print(msg, flush=True)


def cpu_name() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "unknown CPU"


# ---------------------------------------------------------------------------- peak


def matmul_peak(sizes=(1024, 2048), repeats: int = 5) -> dict[str, float]:
  """fp32 GFLOP/s of n x n @ n x n, fastest run, best over `sizes`: XLA (one product per local device, all
  devices at once, so every core works) and torch (all threads). The best of the two is taken as
  the machine's practical limit."""
  devices = jax.local_devices()
  mesh = jax.sharding.Mesh(np.array(devices), ("d",))
  spec = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("d"))
  f = jax.jit(lambda a, b: jnp.einsum("dij,djk->dik", a, b))
  best = {"xla": 0.0, "torch": 0.0}
  for n in sizes:
    a = jax.device_put(jax.random.normal(jax.random.key(0), (len(devices), n, n)), spec)
    b = jax.device_put(jax.random.normal(jax.random.key(1), (len(devices), n, n)), spec)
    f(a, b).block_until_ready()
    ta, tb = torch.randn(n, n), torch.randn(n, n)
    ta @ tb
    times = common.interleaved({"xla": lambda: f(a, b).block_until_ready(),
                                "torch": lambda: ta @ tb}, repeats)
    # A peak: the fastest of the repeats (other processes on the machine only slow runs down).
    best["xla"] = max(best["xla"], len(devices) * 2 * n ** 3 / min(times["xla"]) / 1e9)
    best["torch"] = max(best["torch"], 2 * n ** 3 / min(times["torch"]) / 1e9)
  return best


# ---------------------------------------------------------------------------- per model


def jax_eps(key, b, k, latent) -> np.ndarray:
  """The N(0, I) noise jaxvae.sampling draws for (variation k, image b): [B, K, L]."""
  index = jnp.arange(b)
  zeros = jnp.zeros((b, latent))
  eps = [sampling._sample_posterior(zeros, zeros, jax.random.fold_in(key, i), index,
                                    sampling.Options()) for i in range(k)]
  return np.asarray(jnp.stack(eps, axis=1))


def quick_best(candidates: dict, runs: int = 2):
  """Label of the fastest candidate (min over `runs` after one warm-up each) and all minima."""
  for fn in candidates.values():
    fn()
  times = common.interleaved(candidates, runs)
  best = {k: min(v) for k, v in times.items()}
  return min(best, key=best.get), best


def fast_flops(name: str, latent: int) -> dict[str, int]:
  """FLOPs per image that the fast path executes (products of its matmuls and convs; the
  Karatsuba / Winograd transforms' additions are not counted): scatter layers exactly the useful
  products (16 per input pixel and channel pair), Karatsuba layers (Vanilla VAE) 9 per 2x2 input
  tile (its last layer's 12 columns padded to 16), window layers (DFC-VAE) (h+1)^2 windows of
  2x2 x 4 C_out."""
  scatter = lambda h, ci, co: 2 * h * h * ci * 16 * co
  karatsuba = lambda h, ci, co: 2 * 9 * (h // 2) ** 2 * ci * -(-4 * co // 16) * 16
  window = lambda h, ci, co: 2 * (h + 1) ** 2 * 4 * ci * 4 * co
  enc = common.original_flops(name, latent)["encode"]
  if name != "betavae":  # The Winograd layers (all four convs) keep 9 of 16 products.
    enc -= sum(common._conv(h, ci, co, 4) * 7 // 16  # pylint: disable=protected-access
               for h, ci, co in ((32, 3, 32), (16, 32, 64), (8, 64, 128), (4, 128, 256)))
  if name == "vanilla":
    dec = 2 * latent * 8192 + karatsuba(8, 128, 64) + karatsuba(16, 64, 32) + karatsuba(32, 32, 3)
  elif name == "dfcvae":
    dec = 2 * latent * 8192 + window(8, 128, 64) + window(16, 64, 32) + window(32, 32, 3)
  elif name == "betavae":
    dec = 2 * latent * 2304 + scatter(6, 64, 32) + scatter(14, 32, 32) + scatter(31, 32, 3)
  else:
    dec = (2 * latent * 4096 + scatter(4, 256, 128) + scatter(8, 128, 64) + scatter(16, 64, 32)
           + scatter(32, 32, 3))
  return {"encode": enc, "decode": dec}


def bench_model(name: str, args) -> dict:
  b, k = args.batch, args.variations
  n_img = b * k
  pair = common.build_pair(name)
  model, variables = pair.model, pair.variables
  latent = model.latent_dim
  log(f"\n=== {name} (latent {latent}, weights: {pair.source}) ===")

  start = time.perf_counter()
  prepared = jax.block_until_ready(fast.prepare_jit(model, variables))
  prepare_s = time.perf_counter() - start
  start = time.perf_counter()
  jax.block_until_ready(fast.prepare_jit(model, variables))
  prepare_run_s = time.perf_counter() - start

  rng = np.random.default_rng(0)
  x01 = rng.random((b, 64, 64, 3), dtype=np.float32)
  x_model = np.asarray(models.to_model_range(x01, model.input_range), np.float32)
  x_nchw = torch.from_numpy(np.ascontiguousarray(x_model.transpose(0, 3, 1, 2)))
  key = jax.random.key(0)
  eps = torch.from_numpy(np.array(jax_eps(key, b, k, latent)))
  x_jax = jnp.asarray(x01)
  out_range = model.output_range

  # jaxvae, fast path, the model's default chunk size: the first call pays the compile.
  auto_chunk = chunking.resolve(0, name)

  def jax_run(chunk, params=prepared):
    return sampling.variations(model, params, x_jax, key, k,
                               sampling.Options(chunk_size=chunk)).block_until_ready()

  start = time.perf_counter()
  jax_run(auto_chunk)
  first_s = time.perf_counter() - start
  start = time.perf_counter()
  jax_run(auto_chunk)
  compile_s = first_s - (time.perf_counter() - start)
  log(f"prepare (fold weights): first call {prepare_s:.2f} s, then {prepare_run_s * 1e3:.1f} ms; "
      f"variations first call {first_s:.2f} s (compile ~{compile_s:.2f} s), chunk {auto_chunk}")

  # Searches (quick, min of 2): torch original, torch reformulated, jaxvae chunk.
  t_chunks = sorted(set(int_list(args.torch_chunks)) | {0})  # 0: the default
  original = {False: pair.torch_module,
              True: copy.deepcopy(pair.torch_module).to(memory_format=torch.channels_last)}
  torch_original = {
      (cl, c): (lambda cl=cl, c=c: common.torch_generate(original[cl], x_nchw, eps, c, cl,
                                                        out_range, encoder=original[False]))
      for cl in (False, True) for c in t_chunks}
  best_orig, orig_minima = quick_best(torch_original)
  log("torch original (channels_last, chunk) -> img/s: " + ", ".join(
      f"{'CL' if cl else 'NCHW'}/{c or 'all'} {n_img / t:.0f}"
      for (cl, c), t in orig_minima.items()))
  torch_fast = {cl: common.TorchFast(model, prepared, cl) for cl in (False, True)}
  reform = {(cl, c): (lambda cl=cl, c=c: common.torch_generate(torch_fast[cl], x_nchw, eps, c, cl,
                                                              out_range))
            for cl in (False, True) for c in (t_chunks[1:] or [64])}
  best_reform, reform_minima = quick_best(reform)
  log("torch reformulated (channels_last, chunk) -> img/s: " + ", ".join(
      f"{'CL' if cl else 'NCHW'}/{c} {n_img / t:.0f}" for (cl, c), t in reform_minima.items()))
  ort_runs = ort_search(pair, x_nchw, eps, t_chunks, out_range, args) if args.onnx else {}
  j_chunks = sorted(set(int_list(args.jax_chunks)) | {auto_chunk})
  best_chunk, jax_minima = (quick_best({c: (lambda c=c: jax_run(c)) for c in j_chunks})
                            if len(j_chunks) > 1 else (auto_chunk, {}))
  if jax_minima:
    log("jaxvae chunk -> img/s: "
        + ", ".join(f"{c} {n_img / t:.0f}" for c, t in jax_minima.items()))

  # The comparison proper: every configuration takes turns.
  default_cfg = (False, 0)
  runs = {
      "torch default": torch_original[default_cfg],
      "torch best": torch_original[best_orig],
      "torch reformulated": reform[best_reform],
      **ort_runs,
      "jaxvae": lambda: jax_run(auto_chunk),
  }
  if best_chunk != auto_chunk:
    runs["jaxvae best chunk"] = lambda: jax_run(best_chunk)
  if args.reference:  # Raw flax variables: the reference modules (a pytree of its own).
    ref_run = lambda: sampling.variations(model, variables, x_jax, key, k,
                                          sampling.Options(chunk_size=auto_chunk)).block_until_ready()
    ref_run()  # Compiles the reference path: its own jit cache entry.
    runs["jaxvae reference modules"] = ref_run
  times = common.interleaved(runs, args.repeats)

  # Outputs compared, on [0, 1] images [B*K, 64, 64, 3].
  as_nhwc = lambda t: (t.numpy() if isinstance(t, torch.Tensor) else t).transpose(0, 2, 3, 1)
  outputs = {label: (o.reshape(n_img, 64, 64, 3) if label.startswith("jaxvae") else as_nhwc(o))
             for label, o in ((lbl, fn()) for lbl, fn in runs.items())}
  diffs = {label: float(np.abs(o - outputs["torch default"]).max()) for label, o in outputs.items()}

  flops = common.original_flops(name, latent)
  real = fast_flops(name, latent)
  per_image = flops["decode"] + flops["encode"] / k
  per_image_real = real["decode"] + real["encode"] / k
  rates = {label: n_img / median(ts) for label, ts in times.items()}
  log(f"FLOPs per generated image, original formulation: {per_image / 1e6:.1f} M "
      f"(decode {flops['decode'] / 1e6:.1f} M + encode {flops['encode'] / 1e6:.1f} M / {k}); "
      f"fast path executes {per_image_real / 1e6:.1f} M")
  for label, ts in times.items():
    log(f"  {label:26s} {rates[label]:8.0f} img/s  (median of {len(ts)}: "
        f"{min(ts) * 1e3:.0f}..{max(ts) * 1e3:.0f} ms)  max|diff| vs torch default "
        f"{diffs[label]:.2e}  effective {rates[label] * per_image / 1e9:.0f} GFLOP/s")
  return {"name": name, "latent": latent, "source": pair.source, "rates": rates, "diffs": diffs,
          "best_orig": best_orig, "best_reform": best_reform, "auto_chunk": auto_chunk,
          "best_ort": next((lbl.split()[-1] for lbl in ort_runs), None),
          "best_chunk": best_chunk, "per_image": per_image, "per_image_real": per_image_real,
          "compile_s": compile_s, "first_s": first_s, "prepare_s": prepare_s,
          "outputs": outputs["jaxvae"]}


def ort_search(pair, x_nchw, eps, chunks, out_range, args) -> dict:
  """{"onnxruntime chunk C": fn} for ORT's fastest chunk size C (quick search, as torch's), or
  {} when onnxruntime is missing."""
  missing = onnx_peer.available()
  if missing:
    log(f"ONNX Runtime skipped: {missing}")
    return {}
  start = time.perf_counter()
  ort = onnx_peer.OrtPair(pair.torch_module, pair.model.latent_dim, args.ort_threads)
  x_np, eps_np = x_nchw.numpy(), eps.numpy()
  candidates = {c: (lambda c=c: ort.generate(x_np, eps_np, c, out_range)) for c in chunks}
  best, minima = quick_best(candidates)
  n_img = eps_np.shape[0] * eps_np.shape[1]
  log(f"ONNX Runtime {onnx_peer.version()} ({ort.threads} threads; export + sessions "
      f"{time.perf_counter() - start:.1f} s) chunk -> img/s: "
      + ", ".join(f"{c or 'all'} {n_img / t:.0f}" for c, t in minima.items()))
  return {f"onnxruntime chunk {best}": candidates[best]}


# ---------------------------------------------------------------------------- post-processing


def bench_postprocess(images: np.ndarray, repeats: int, chunk: int) -> dict | None:
  """The report chain (enhance, dehaze, bilateral, unsharp): batched JAX vs per-image PIL/OpenCV;
  `chunk`: images per step on each device, as inside `variations`."""
  try:
    sys.path.insert(0, os.path.join(common.REPO, "tests"))
    import postprocess_reference as ref  # pylint: disable=import-outside-toplevel
    from jaxvae import postprocess  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    log(f"post-processing comparison skipped: {e}")
    return None
  chain = postprocess.build_pipeline("report")
  batched = jax.jit(chain)
  x = jnp.asarray(images)
  start = time.perf_counter()
  batched(x).block_until_ready()
  compile_s = time.perf_counter() - start
  runs = {"jax batched, 1 device": lambda: batched(x).block_until_ready()}
  devices = jax.local_devices()
  if len(devices) > 1 and len(images) % len(devices) == 0:  # As inside sharded variations.
    mesh = jax.sharding.Mesh(np.array(devices), ("b",))
    spec = jax.sharding.PartitionSpec("b")
    sharded = jax.jit(jax.shard_map(lambda v: chunking.map_chunks(chain, v, chunk), mesh=mesh,
                                    in_specs=spec, out_specs=spec))
    xs = jax.device_put(x, jax.sharding.NamedSharding(mesh, spec))
    sharded(xs).block_until_ready()
    runs[f"jax, {len(devices)} devices, chunks of {chunk}"] = lambda: sharded(xs).block_until_ready()
  per_image = lambda: np.stack([ref.report_chain(im) for im in images])
  runs["per image PIL/OpenCV"] = per_image
  times = common.interleaved(runs, max(3, repeats // 2))
  diff = float(np.abs(np.asarray(batched(x)) - per_image()).max())
  rates = {k: len(images) / median(v) for k, v in times.items()}
  log(f"\npost-processing 'report' chain on {len(images)} generated images: "
      + ", ".join(f"{k} {v:.0f} img/s" for k, v in rates.items())
      + f"; max|JAX - per image| {diff:.2e} (levels of 1/255 = {1 / 255:.4f}); "
        f"JAX first call {compile_s:.2f} s")
  return {"rates": rates, "diff": diff, "compile_s": compile_s}


# ---------------------------------------------------------------------------- main


def main(args):
  torch.set_num_threads(os.cpu_count() or 1)
  devices = jax.local_devices()
  log(f"machine: {cpu_name()}, {os.cpu_count()} cores; jax {jax.__version__} "
      f"({jax.default_backend()}, {len(devices)} device(s)), torch {torch.__version__} "
      f"({torch.get_num_threads()} threads)")
  log(f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r} (added by jaxvae.schedule: {FLAGS_ADDED})")
  if args.onnx and not onnx_peer.available():
    log(f"onnxruntime {onnx_peer.version()}")
  log(f"variations: B={args.batch} faces x K={args.variations}, fp32, encode included; "
      f"{args.repeats} interleaved rounds, medians")
  sizes = (1024,) if args.quick else (1024, 2048)
  peak = matmul_peak(sizes)
  log(f"matmul peak (fp32, n^3 for n in {sizes}): XLA {peak['xla']:.0f} GFLOP/s, torch "
      f"{peak['torch']:.0f} GFLOP/s (measured again at the end; the higher is kept)")

  results = [bench_model(name, args) for name in args.models.split(",")]
  again = matmul_peak(sizes)
  peak = {k: max(v, again[k]) for k, v in peak.items()}
  machine_peak = max(peak.values())
  log(f"\nmatmul peak at the end: XLA {again['xla']:.0f}, torch {again['torch']:.0f} GFLOP/s")
  post = None
  if args.postprocess_images:
    imgs = np.asarray(results[-1]["outputs"][:args.postprocess_images], np.float32)
    post = bench_postprocess(imgs, args.repeats, results[-1]["auto_chunk"])

  log(f"\n## Generation, images/s ({cpu_name()}, {os.cpu_count()} cores, "
      f"B={args.batch} x K={args.variations}, fp32, encode included)\n")
  log(f"matmul peak (best of start and end): XLA {peak['xla']:.0f}, torch {peak['torch']:.0f} "
      "GFLOP/s. GFLOP/s = original-formulation FLOPs x img/s (effective); 'real' = FLOPs the fast "
      "path executes; real / peak against the higher matmul peak.\n")
  log("| model | torch default | torch best (original) | torch reformulated | ONNX Runtime | "
      "jaxvae | jaxvae / torch best | jaxvae / torch reformulated | jaxvae / ORT | "
      "GFLOP/s effective (real) | real / peak | max abs diff jaxvae (ORT) | first call (compile) |")
  log("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
  for r in results:
    rt = r["rates"]
    jx = max(rt["jaxvae"], rt.get("jaxvae best chunk", 0))
    chunk = r["best_chunk"] if rt.get("jaxvae best chunk", 0) > rt["jaxvae"] else r["auto_chunk"]
    cl, c = r["best_orig"]
    rcl, rc = r["best_reform"]
    eff, real = jx * r["per_image"] / 1e9, jx * r["per_image_real"] / 1e9
    diff = max(v for lbl, v in r["diffs"].items() if lbl.startswith("jaxvae"))
    ort = next((lbl for lbl in rt if lbl.startswith("onnxruntime")), None)
    ort_cells = ("-", "-", "")
    if ort:
      ort_cells = (f"{rt[ort]:.0f} (chunk {int(r['best_ort']) or 'all'})",
                   f"**{jx / rt[ort]:.2f}x**", f" ({r['diffs'][ort]:.1e})")
    log(f"| {r['name']} | {rt['torch default']:.0f} | {rt['torch best']:.0f} "
        f"({'channels_last' if cl else 'NCHW'}, chunk {c or 'all'}) | "
        f"{rt['torch reformulated']:.0f} ({'channels_last' if rcl else 'NCHW'}, chunk {rc}) | "
        f"{ort_cells[0]} | {jx:.0f} (chunk {chunk}) | **{jx / rt['torch best']:.2f}x** | "
        f"{jx / rt['torch reformulated']:.2f}x | {ort_cells[1]} | {eff:.0f} ({real:.0f}) | "
        f"{real / machine_peak:.0%} | {diff:.1e}{ort_cells[2]} | "
        f"{r['first_s']:.1f} s ({r['compile_s']:.1f} s) |")
  if any("jaxvae reference modules" in r["rates"] for r in results):
    log("\njaxvae on the reference flax modules (same schedule): " + ", ".join(
        f"{r['name']} {r['rates']['jaxvae reference modules']:.0f}" for r in results
        if "jaxvae reference modules" in r["rates"]) + " img/s")
  if post:
    log("\npost-processing chain: " + ", ".join(f"{k} {v:.0f} img/s" for k, v in post["rates"].items())
        + f" (max abs diff {post['diff']:.1e})")


if __name__ == "__main__":
  main(ARGS)
