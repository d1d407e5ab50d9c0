"""Training speed, side by side: the torch originals' training loops vs jaxvae's train step.

For each model, on the same batch (64 faces by default) and weights:
  - torch: the original module in train mode, its loss (port/train_ref/torch_train.py; for the
    PVAE the torch twin of benchmarks/common.py with the notebook's loss), torch.optim.Adam;
    zero_grad, forward, loss, backward, step, as train.py does. torch.set_num_threads(--threads);
    NCHW and channels_last are both timed and the faster one is reported ("best").
  - jaxvae: jaxvae.train.step.jit_train_step (donated state, batch sharded over the host
    devices of jaxvae.schedule's CPU schedule), the same loss and Adam.
Where the time goes: forward only (training-mode loss), forward + backward (gradients), and the
whole step, for both frameworks. Rounds alternate between the contestants (load from other
processes hits them alike); medians. Data loading is not included (a fixed batch).

  python benchmarks/training.py [--models=vanilla,betavae,dfcvae,pvae] [--batch=64]
      [--steps=5] [--repeats=5] [--threads=2] [--torch-device=cpu|cuda|none] [--dtype=bfloat16]
  python benchmarks/training.py --demo [--demo-steps=300]   # docs/training_curves.png

--demo trains on the two bundled portraits (batch 4, CPU): betavae-l200 fine-tuned at the
original's learning rate (1e-4) and at 1e-3, a DFC-VAE and a Vanilla VAE from scratch (their
originals' recipes), evaluating the portraits' reconstruction MSE (z = mean, [0, 1]) every 10
steps; it prints the numbers and CPU times and draws the curves.

XLA_FLAGS: unless JAXVAE_XLA_FLAGS=0 the script adds jaxvae.schedule's CPU flags before importing
jax (on 2 cores: two single-threaded host devices over which the batch is split).
"""

import argparse
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # pylint: disable=wrong-import-position  (imports no jax)
from jaxvae import schedule  # pylint: disable=wrong-import-position  (imports no jax)


def parse_args():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--models", default=",".join(common.MODEL_NAMES))
  ap.add_argument("--batch", type=int, default=64)
  ap.add_argument("--steps", type=int, default=5, help="steps per timed call")
  ap.add_argument("--repeats", type=int, default=5, help="timed rounds (medians)")
  ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
  ap.add_argument("--host-devices", type=int, default=None,
                  help="CPU host devices for jaxvae (default: jaxvae.schedule's choice)")
  ap.add_argument("--torch-device", default="cpu", help="cpu, cuda, or none (jaxvae only)")
  ap.add_argument("--dtype", default="float32", help="jaxvae compute dtype (float32, bfloat16)")
  ap.add_argument("--demo", action="store_true", help="the training demonstrations instead")
  ap.add_argument("--demo-steps", type=int, default=300)
  ap.add_argument("--demo-out", default=os.path.join(common.REPO, "docs", "training_curves.png"))
  return ap.parse_args()


DEMOS = (  # label, options
    ("Beta-VAE l200 fine-tuned, lr 1e-4 (original)", {"model": "betavae",
                                                      "init_from": "betavae-l200"}),
    ("Beta-VAE l200 fine-tuned, lr 1e-3", {"model": "betavae", "init_from": "betavae-l200",
                                           "learning_rate": 1e-3}),
    ("DFC-VAE from scratch (original recipe)", {"model": "dfcvae"}),
    ("Vanilla VAE from scratch (original recipe)", {"model": "vanilla"}),
)


def demo(args) -> None:
  """The demonstrations: MSE curves on the bundled portraits, numbers and CPU time."""
  import re
  import tempfile
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  import numpy as np
  from jaxvae import data, models, sampling
  from jaxvae.train import TrainOptions, loop, train_and_evaluate

  portraits = "bundled:astronaut,bundled:grace_hopper"
  fig, axes = plt.subplots(1, 2, figsize=(11, 4))
  with tempfile.TemporaryDirectory() as tmp:
    for k, (label, fields) in enumerate(DEMOS):
      options = TrainOptions.from_config({
          **fields, "data": portraits, "steps": args.demo_steps, "batch_size": 4,
          "eval_every": 10, "eval_images": 2, "log_every": 50, "checkpoint_every": 10 ** 6,
          "image_every": 10 ** 6})
      model, variables, _ = loop.initial_model(options, lambda s: None)
      x = data.load(portraits, models.get_info(options.model).celeba_box).images
      recon = np.asarray(sampling.reconstruct(model, variables, x))
      curve = [(0, float(np.mean((recon - x) ** 2)))]
      lines = []
      cpu0, wall0 = time.process_time(), time.perf_counter()
      train_and_evaluate(options, os.path.join(tmp, str(k)), print_fn=lines.append)
      cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
      curve += [(int(m[1]), float(m[2])) for m in
                (re.match(r"step (\d+) validation mse=([0-9.e-]+)", l) for l in lines) if m]
      steps, mses = zip(*curve)
      best = min(mses)
      print(f"{label}: MSE {mses[0]:.4f} -> {mses[-1]:.4f} after {steps[-1]} steps (lowest "
            f"{best:.4f} at step {steps[mses.index(best)]}); first step below 0.053: "
            f"{next((s for s, m in curve if m < 0.053), None)}, below 0.02: "
            f"{next((s for s, m in curve if m < 0.02), None)}; {wall:.0f} s wall, "
            f"{cpu:.0f} s CPU")
      axes[0 if options.init_from else 1].plot(steps, mses, label=label)
  axes[0].axhline(0.053, color="gray", ls=":", label="0.053")
  axes[1].axhline(0.02, color="gray", ls=":", label="0.02")
  axes[1].set_yscale("log")
  for ax, title in zip(axes, ("fine-tuning betavae-l200", "from scratch")):
    ax.set(xlabel="step (batch 4)", ylabel="reconstruction MSE on the 2 portraits", title=title)
    ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(args.demo_out, dpi=100)
  print(f"wrote {args.demo_out}")


def torch_setup(pair, batch: int, channels_last: bool, device: str = "cpu"):
  """(step, forward, backward) closures of the original's training loop on one fixed batch."""
  import numpy as np
  import torch
  from port.train_ref import torch_train

  module = pair.torch_module.train().to(device)
  fmt = torch.channels_last if channels_last else torch.contiguous_format
  module = module.to(memory_format=fmt)
  rng = np.random.default_rng(0)
  x01 = torch.from_numpy(rng.random((batch, 3, 64, 64), dtype=np.float32)).to(device)
  lo, hi = pair.model.input_range
  x = (lo + (hi - lo) * x01).contiguous(memory_format=fmt)
  latent = pair.model.latent_dim
  if pair.name == "pvae":
    optimizer = torch.optim.Adam(module.parameters(), lr=1.5e-3, eps=1e-7)
    eps = torch.from_numpy(0.1 * rng.standard_normal((1, latent)).astype(np.float32)).to(device)

    def loss_fn():
      mu, logvar = module.encode(x)
      recon = module.decode(mu + torch.exp(logvar / 2) * eps)
      rec = torch.mean((255.0 * x01.contiguous(memory_format=fmt) - recon) ** 2)
      kl = torch.mean(torch.sum(-0.5 * (1 + logvar - mu ** 2 - torch.exp(logvar)), dim=1))
      return 1.8 * rec + 10.0 * kl
  else:
    optimizer = torch.optim.Adam(module.parameters(), lr=torch_train.LEARNING_RATES[pair.name])
    eps = torch.from_numpy(rng.standard_normal((batch, latent)).astype(np.float32)).to(device)

    def loss_fn():
      recon, mu, logvar = module(x, eps)
      return torch_train.LOSSES[pair.name](recon, x, mu, logvar)

  sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

  def forward():
    with torch.no_grad():
      loss_fn()
    sync()

  def backward():
    optimizer.zero_grad()
    loss_fn().backward()
    sync()

  def step():
    optimizer.zero_grad()
    loss_fn().backward()
    optimizer.step()
    sync()

  return step, forward, backward


def jax_setup(pair, batch: int, dtype: str = "float32"):
  """(step, forward, backward, compile seconds) of jaxvae's training step on one fixed batch."""
  import jax
  import numpy as np
  from jaxvae.train import losses, optim, recipes, state as state_lib, step

  r = recipes.get(pair.name)
  config = step.StepConfig(pair.model, losses.Spec(r.loss, r.beta, r.alpha), r.eps_std,
                           r.eps_shared, dtype)
  tx = optim.make(r.optimizer, r.learning_rate)
  mesh = step.make_mesh()
  lo, hi = pair.model.input_range
  x = step.put_batch(mesh, (lo + (hi - lo) * np.random.default_rng(0).random(
      (batch, 64, 64, 3))).astype(np.float32))
  holder = [step.put_replicated(mesh, state_lib.create(
      jax.tree.map(np.asarray, pair.variables), tx, 0))]
  train = step.jit_train_step(config, tx, mesh)
  eps = step.sample_eps(jax.random.key(0), batch, pair.model.latent_dim, r.eps_std, r.eps_shared)
  fwd = jax.jit(lambda s, x: step.forward(config, s.params, s.batch_stats, x, eps)[0])
  grad = jax.jit(lambda s, x: step.gradients(config, s.params, s.batch_stats, x, eps)[1])
  start = time.perf_counter()
  holder[0], metrics = train(holder[0], x)
  jax.block_until_ready(metrics)
  compile_s = time.perf_counter() - start
  jax.block_until_ready((fwd(holder[0], x), grad(holder[0], x)))

  def run_step():
    holder[0], m = train(holder[0], x)
    return m

  return (run_step, lambda: fwd(holder[0], x), lambda: grad(holder[0], x), compile_s,
          mesh.devices.size)


def repeat(fn, n: int):
  def run():
    import jax
    out = None
    for _ in range(n):
      out = fn()
    jax.block_until_ready(out)
  return run


def bench_model(name: str, args) -> dict:
  pair = common.build_pair(name)
  torch_fns = {}
  for layout in ("nchw", "channels_last") if args.torch_device != "none" else ():
    fns = torch_setup(common.build_pair(name), args.batch, layout == "channels_last",
                      args.torch_device)
    try:
      fns[0]()  # warm-up
    except RuntimeError as e:  # The Beta-VAE's x.view(-1, 256) refuses channels_last tensors.
      print(f"   torch {layout}: not applicable to the original ({str(e).splitlines()[0][:60]})")
      continue
    torch_fns[layout] = fns
  jstep, jfwd, jgrad, compile_s, devices = jax_setup(pair, args.batch, args.dtype)
  fns = {f"torch_{layout}_{part}": repeat(f, args.steps)
         for layout, parts in torch_fns.items() for part, f in zip(("step", "fwd", "bwd"), parts)}
  fns.update({"jax_step": repeat(jstep, args.steps), "jax_fwd": repeat(jfwd, args.steps),
              "jax_bwd": repeat(jgrad, args.steps)})
  times = common.interleaved(fns, args.repeats)
  per_step = {k: common.median(v) / args.steps for k, v in times.items()}
  result = {"name": name, "source": pair.source, "compile_s": compile_s, "devices": devices,
            **per_step, "jax_steps_s": 1 / per_step["jax_step"]}
  if torch_fns:
    best = min(torch_fns, key=lambda l: per_step[f"torch_{l}_step"])
    result.update(best_layout=best, torch_steps_s=1 / per_step[f"torch_{best}_step"],
                  ratio=per_step[f"torch_{best}_step"] / per_step["jax_step"])
  return result


def main():
  args = parse_args()
  added = schedule.configure_xla_flags(host_devices=args.host_devices)
  if args.demo:
    demo(args)
    return
  import torch
  torch.set_num_threads(args.threads)
  import jax
  print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; jax "
        f"{jax.__version__} ({jax.devices()[0].device_kind} x {len(jax.devices())}, flags "
        f"{added}), torch {torch.__version__} ({args.torch_device}, {args.threads} threads); "
        f"batch {args.batch}, {args.steps} steps x {args.repeats} rounds, medians")
  rows = []
  for name in args.models.split(","):
    row = bench_model(name, args)
    rows.append(row)
    if "ratio" not in row:
      print(f"{name}: jaxvae {row['jax_steps_s']:.2f} steps/s ({args.dtype}, {row['devices']} "
            f"device(s)); forward {row['jax_fwd'] * 1e3:.1f} ms, forward+backward "
            f"{row['jax_bwd'] * 1e3:.1f} ms, step {row['jax_step'] * 1e3:.1f} ms; compile "
            f"{row['compile_s']:.1f} s")
      continue
    b = row["best_layout"]
    print(f"{name} ({row['source']}): torch best ({b}) {row['torch_steps_s']:.2f} steps/s, jaxvae "
          f"{row['jax_steps_s']:.2f} steps/s -> {row['ratio']:.2f}x; jax compile "
          f"{row['compile_s']:.1f} s")
    for fw, prefix in (("torch", f"torch_{b}_"), ("jaxvae", "jax_")):
      fwd, bwd, full = (row[prefix + p] * 1e3 for p in ("fwd", "bwd", "step"))
      print(f"   {fw}: forward {fwd:.0f} ms, forward+backward {bwd:.0f} ms (backward "
            f"{bwd - fwd:.0f}), step {full:.0f} ms (optimizer and rest {full - bwd:.0f})")
  if any("ratio" in row for row in rows):
    print("\n| model | torch best (layout) steps/s | jaxvae steps/s | jaxvae / torch | "
          "torch fwd / bwd / opt ms | jaxvae fwd / bwd / opt ms |")
    print("|---|---|---|---|---|---|")
  for row in rows:
    if "ratio" not in row:
      continue
    b = row["best_layout"]
    t = [row[f"torch_{b}_{p}"] * 1e3 for p in ("fwd", "bwd", "step")]
    j = [row[f"jax_{p}"] * 1e3 for p in ("fwd", "bwd", "step")]
    print(f"| {row['name']} | {row['torch_steps_s']:.2f} ({b}) | {row['jax_steps_s']:.2f} | "
          f"**{row['ratio']:.2f}x** | {t[0]:.1f} / {t[1] - t[0]:.1f} / {t[2] - t[1]:.1f} | "
          f"{j[0]:.1f} / {j[1] - j[0]:.1f} / {j[2] - j[1]:.1f} |")


if __name__ == "__main__":
  main()
