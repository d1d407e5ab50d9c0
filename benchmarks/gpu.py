"""Generation on a GPU: jaxvae's variations engine against the torch originals on the same card.

  python benchmarks/gpu.py [--models=vanilla,betavae,dfcvae,pvae] [--batches=64,256,1024]

For each model and batch size B (K variations each, encode included, random weights with
non-trivial BatchNorm statistics; the published Beta-VAE l200 where ../shared has it), in one
run, interleaved, medians of --repeats timed calls after warm-up:
- jaxvae: `jaxvae.VAE.variations` on the fast path, the whole batch in one step (the GPU
  schedule), at XLA's default fp32 matmul precision (TF32 on Ampere and later) and at HIGHEST;
- torch: the original modules on CUDA (eval, inference_mode, cudnn), with TF32 allowed and
  with it off (exact fp32).
Prints images/s, jaxvae/torch ratios at like precision, and max abs differences of the outputs
(on [0, 1]) against torch in exact fp32, so that the precision of each row is visible. The
largest batch that still gains more than 10% images/s is reported as the accelerator batch.
"""

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests"), os.path.join(ROOT, "benchmarks")]


def parse_args():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--models", default="vanilla,betavae,dfcvae,pvae")
  ap.add_argument("--batches", default="64,256,1024")
  ap.add_argument("--variations", type=int, default=10)
  ap.add_argument("--repeats", type=int, default=10)
  ap.add_argument("--json", default="", help="also write the results here")
  return ap.parse_args()


def _sync(x):
  import jax  # pylint: disable=import-outside-toplevel
  return jax.block_until_ready(x)


def bench(name: str, batches: list[int], k: int, repeats: int) -> list[dict]:
  import jax  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  import torch  # pylint: disable=import-outside-toplevel

  import common  # pylint: disable=import-outside-toplevel
  from jaxvae import api, models  # pylint: disable=import-outside-toplevel

  pair = common.build_pair(name)
  vae = api.VAE(name, pair.model, pair.variables)
  module = pair.torch_module.cuda().eval()
  value_in, value_out = pair.model.input_range, pair.model.output_range
  rows = []
  for b in batches:
    rng = np.random.default_rng(b)
    x = rng.random((b, 64, 64, 3), dtype=np.float32)
    key = jax.random.key(0)
    # The engine's own eps, so that both frameworks decode the same latents.
    eps = np.stack([np.asarray(jax.vmap(lambda i, kk=kk: jax.random.normal(
        jax.random.fold_in(jax.random.split(jax.random.fold_in(key, kk))[1], i),
        (pair.model.latent_dim,)))(np.arange(b))) for kk in range(k)], axis=1)
    x_t = torch.from_numpy(np.ascontiguousarray(
        np.asarray(models.to_model_range(x, value_in)).transpose(0, 3, 1, 2))).cuda()
    eps_t = torch.from_numpy(eps).cuda()

    def torch_run(tf32: bool):
      torch.backends.cuda.matmul.allow_tf32 = tf32
      torch.backends.cudnn.allow_tf32 = tf32
      out = common.torch_generate(module, x_t, eps_t, 0, False, value_out)
      torch.cuda.synchronize()
      return out

    def jax_run(precision: str):
      with jax.default_matmul_precision(precision):
        return _sync(vae.variations(x, k, seed=key, sampling_rule="per_sample"))

    fns = {"jax default": lambda: jax_run("default"), "jax highest": lambda: jax_run("highest"),
           "torch tf32": lambda: torch_run(True), "torch fp32": lambda: torch_run(False)}
    exact = torch_run(False).cpu().numpy().transpose(0, 2, 3, 1).reshape(b, k, 64, 64, 3)
    diffs = {}
    for label, fn in fns.items():
      out = fn()  # Warm-up (compiles) and the outputs for the comparison.
      out = (np.asarray(out) if label.startswith("jax")
             else out.cpu().numpy().transpose(0, 2, 3, 1).reshape(b, k, 64, 64, 3))
      diffs[label] = float(np.abs(out.reshape(exact.shape) - exact).max())
    times = common.interleaved(fns, repeats)
    rate = {label: b * k / common.median(t) for label, t in times.items()}
    torch_fp32 = rate["torch fp32"]
    rows.append({"model": name, "B": b, "K": k, "images_per_s": rate, "max_abs_diff": diffs,
                 "jax_highest_over_torch_fp32": rate["jax highest"] / torch_fp32,
                 "jax_default_over_torch_tf32": rate["jax default"] / rate["torch tf32"]})
    print(f"{name:8s} B={b:5d} " + "  ".join(f"{l} {r:9.0f}" for l, r in rate.items())
          + f"  ratio(fp32) {rows[-1]['jax_highest_over_torch_fp32']:.2f}x"
          + f"  ratio(tf32) {rows[-1]['jax_default_over_torch_tf32']:.2f}x"
          + "  diffs " + " ".join(f"{d:.1e}" for d in diffs.values()), flush=True)
  return rows


def accelerator_batch(rows: list[dict]) -> int:
  """The largest B whose images/s (jax default) is > 1.1x the next smaller B's."""
  best = rows[0]["B"]
  for prev, cur in zip(rows, rows[1:]):
    if cur["images_per_s"]["jax default"] > 1.1 * prev["images_per_s"]["jax default"]:
      best = cur["B"]
  return best


def main():
  args = parse_args()
  import jax  # pylint: disable=import-outside-toplevel
  import torch  # pylint: disable=import-outside-toplevel
  print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}; torch {torch.__version__} on "
        f"{torch.cuda.get_device_name(0)}", flush=True)
  start = time.time()
  results = {}
  for name in args.models.split(","):
    rows = bench(name, [int(b) for b in args.batches.split(",")], args.variations, args.repeats)
    results[name] = {"rows": rows, "accelerator_batch": accelerator_batch(rows)}
    print(f"{name}: accelerator batch {results[name]['accelerator_batch']}", flush=True)
  print(f"total {time.time() - start:.0f} s")
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"device": jax.devices()[0].device_kind, "jax": jax.__version__,
                 "torch": torch.__version__, "results": results}, f, indent=2)


if __name__ == "__main__":
  main()
