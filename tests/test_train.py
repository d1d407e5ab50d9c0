"""The training loop: options, data order, checkpoints (kill, SIGINT, resume), devices, logs."""

import dataclasses
import glob
import json
import os
import signal
import struct
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import REPO
from fake_celeba import write_fake_celeba
from jaxvae import checkpoint, models
from jaxvae.train import data, losses, optim, recipes, step
from jaxvae.train import TrainOptions, OptionsError, TrainingInterrupted, train_and_evaluate

PORTRAITS = "bundled:astronaut,bundled:grace_hopper"
# Small runs: Beta-VAE (the cheapest model), batch 4, checkpoints every 2 steps.
BASE = {"model": "betavae", "data": PORTRAITS, "batch_size": 4, "checkpoint_every": 2,
        "keep": 3, "log_every": 2, "image_every": 100, "eval_every": 100, "eval_images": 2,
        "flip": True, "seed": 3}
DRIVER = """
import json, os, signal, sys
from jaxvae.train import TrainOptions, train_and_evaluate
options, workdir, kill = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
hooks = []
if kill:
  name, at = kill.split("@")
  hooks.append(lambda s, state: os.kill(os.getpid(), getattr(signal, name)) if s == int(at) else 0)
train_and_evaluate(TrainOptions.from_config(options), workdir, hooks=hooks)
"""


def _run_driver(options: dict, workdir: str, kill: str = "", env: dict | None = None,
                cache: str | None = None) -> subprocess.CompletedProcess:
  extra = {"JAX_COMPILATION_CACHE_DIR": cache, "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
           "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"} if cache else {}
  return subprocess.run([sys.executable, "-c", DRIVER, json.dumps(options), workdir, kill],
                        cwd=REPO, capture_output=True, text=True, timeout=600,
                        env={**os.environ, **extra, **(env or {})})


def _exported(workdir: str) -> dict:
  loaded = checkpoint.load(os.path.join(workdir, "export"))
  return {k: np.asarray(v) for k, v in checkpoint.flatten(loaded.variables).items()}


def _assert_bitwise(a: dict, b: dict) -> None:
  assert a.keys() == b.keys()
  different = [k for k in a if not np.array_equal(a[k], b[k])]
  assert not different, different


def test_options_from_config_checks_everything_before_work():
  o = TrainOptions.from_config({"data": PORTRAITS, "steps": 10}, model="pvae")
  assert (o.resolved_batch_size(), o.resolved_learning_rate(), o.resolved_shuffle()) == (
      64, 1.5e-3, False)
  assert o.uses_plateau() and o.loss_spec() == losses.Spec("pvae", 10.0, 1.8)
  assert TrainOptions(model="betavae", data="x", learning_rate=3).resolved_learning_rate() == 3
  with pytest.raises(OptionsError, match="unknown training option.*stepz"):
    TrainOptions.from_config({"model": "betavae", "data": "x", "stepz": 3})
  with pytest.raises(OptionsError, match="steps must be an integer, got '10'"):
    TrainOptions.from_config({"model": "betavae", "data": "x", "steps": "10"})
  with pytest.raises(OptionsError) as e:
    TrainOptions.from_config({"model": "betavae", "data": "", "steps": 0, "loss": "l1",
                              "compute_dtype": "float16", "batch_size": 0})
  for part in ("data is empty", "steps must be >= 1", "loss must be one of",
               "compute_dtype must be one of", "batch_size must be >= 1"):
    assert part in str(e.value)
  with pytest.raises(OptionsError, match="model must be one of"):
    TrainOptions(model="gan", data="x")


def test_sampler_order_is_a_function_of_the_step():
  a = data.Sampler(10, 4, seed=1, shuffle=True, flip=True)
  first = [a.batch(s) for s in range(6)]  # 24 positions: crosses two epoch boundaries
  b = data.Sampler(10, 4, seed=1, shuffle=True, flip=True)
  for s in (5, 2, 0, 4):  # Any order, fresh sampler: what a resumed run does.
    np.testing.assert_array_equal(b.batch(s)[0], first[s][0])
    np.testing.assert_array_equal(b.batch(s)[1], first[s][1])
  stream = np.concatenate([f[0] for f in first])
  for e in range(2):  # Each epoch is a permutation of all images.
    assert sorted(stream[10 * e:10 * e + 10]) == list(range(10))
  assert not np.array_equal(stream[:10], stream[10:20])
  assert 0 < np.concatenate([f[1] for f in first]).mean() < 1
  c = data.Sampler(10, 4, seed=1, shuffle=False)
  np.testing.assert_array_equal(c.batch(2)[0], [8, 9, 0, 1])
  assert not c.batch(2)[1].any()


def test_balanced_sampler_draws_each_group_equally():
  groups = np.array([1] * 90 + [0] * 10)
  s = data.Sampler(100, 50, seed=0, groups=groups)
  drawn = np.concatenate([s.batch(k)[0] for k in range(200)])
  share = groups[drawn].mean()
  assert abs(share - 0.5) < 0.02  # 10,000 draws; the data holds 90% of group 1
  with pytest.raises(ValueError, match="one group"):
    data.Sampler(5, 2, seed=0, groups=np.ones(5, np.int64))


def test_sources_read_files_and_celeba_splits(tmp_path):
  box = models.get_info("betavae").celeba_box
  files = data.open_source(PORTRAITS, "train", box)
  assert isinstance(files, data.FileSource) and len(files) == 2
  images = files.load(np.array([1, 0, 1]))
  assert images.shape == (3, 64, 64, 3) and images.dtype == np.float32
  np.testing.assert_array_equal(images[0], images[2])
  fake = write_fake_celeba(str(tmp_path / "celeba"), n=20)
  assert data.is_celeba(fake.root) and not data.is_celeba(str(tmp_path))
  train = data.open_source(fake.root, "train", box)
  val = data.open_source(fake.root, "validation", box)
  assert (len(train), len(val)) == (len(fake.index("train")), len(fake.index("validation")))
  np.testing.assert_array_equal(train.groups("Male"),
                                fake.attributes[fake.index("train"), 20] > 0)
  sampler = data.Sampler(len(train), 4, seed=0, flip=True)
  batch = data.load_batch(train, sampler, 1)
  indices, flips = sampler.batch(1)
  expected = train.load(indices)
  expected[flips] = expected[flips][:, :, ::-1]
  np.testing.assert_array_equal(batch.images, expected)
  with pytest.raises(ValueError, match="needs CelebA attributes"):
    files.groups("Male")


def test_killed_run_resumes_and_continues_bitwise(tmp_path):
  """SIGKILL at step 5 of 6, resume, finish, then continue to 10: equal to one run to 10."""
  cache = str(tmp_path / "xla")
  straight, broken = str(tmp_path / "straight"), str(tmp_path / "broken")
  r = _run_driver({**BASE, "steps": 10}, straight, cache=cache)
  assert r.returncode == 0, r.stderr[-2000:]
  r = _run_driver({**BASE, "steps": 6}, broken, kill="SIGKILL@5", cache=cache)
  assert r.returncode == -signal.SIGKILL
  finished = [d for d in os.listdir(os.path.join(broken, "checkpoints")) if d.isdigit()]
  assert finished and set(finished) <= {"2", "4"}  # 4 may still have been in flight
  r = _run_driver({**BASE, "steps": 6}, broken, cache=cache)
  assert r.returncode == 0 and "resuming from step" in r.stdout, r.stderr[-2000:]
  r = _run_driver({**BASE, "steps": 10}, broken, cache=cache)
  assert r.returncode == 0 and "resuming from step 6" in r.stdout, r.stderr[-2000:]
  _assert_bitwise(_exported(straight), _exported(broken))
  r = _run_driver({**BASE, "steps": 10, "seed": 4}, broken, cache=cache)
  assert r.returncode != 0 and "seed: stored 3, now 4" in r.stderr


def _read_events(directory: str) -> dict[str, list[float]]:
  """Scalar tags -> values from TensorBoard event files (TFRecord framing, Event protos)."""
  from tensorboardX.proto import event_pb2  # pylint: disable=import-outside-toplevel
  scalars: dict[str, list[float]] = {}
  for path in glob.glob(os.path.join(directory, "events.out.tfevents.*")):
    with open(path, "rb") as f:
      raw = f.read()
    pos = 0
    while pos < len(raw):
      (length,) = struct.unpack("<Q", raw[pos:pos + 8])
      event = event_pb2.Event.FromString(raw[pos + 12:pos + 12 + length])
      pos += 12 + length + 4
      for value in event.summary.value:
        if value.HasField("simple_value"):
          scalars.setdefault(value.tag, []).append(value.simple_value)
        elif value.HasField("image"):
          scalars.setdefault(value.tag, []).append(float("nan"))
  return scalars


def test_sigint_keeps_a_checkpoint_and_the_run_resumes(tmp_path):
  """In-process: SIGINT at step 3 of 5 -> exit code 130, checkpoint and export at step 3; the
  resumed run equals a straight run, including the plateau schedule's state."""
  options = TrainOptions.from_config({**BASE, "steps": 5, "eval_every": 1, "image_every": 5,
                                      "schedule": "plateau", "plateau_min_delta": 1e9,
                                      "plateau_patience": 2})
  straight = train_and_evaluate(options, str(tmp_path / "straight"), print_fn=lambda s: None)
  workdir = str(tmp_path / "interrupted")
  messages = []
  with pytest.raises(TrainingInterrupted) as e:
    train_and_evaluate(options, workdir, print_fn=messages.append,
                       hooks=[lambda s, st: os.kill(os.getpid(), signal.SIGINT) if s == 3 else 0])
  assert e.value.code == 130 and "interrupted at step 3" in e.value.message
  assert checkpoint.load(os.path.join(workdir, "export")).metadata["step"] == 3
  resumed = train_and_evaluate(options, workdir, print_fn=messages.append)
  _assert_bitwise(_exported(str(tmp_path / "straight")), _exported(workdir))
  # Evaluations 1..5 never improve after the first: reductions at the 3rd and 5th.
  for result in (straight, resumed):
    lr = float(optim.learning_rate(result.state.opt_state))
    assert lr == pytest.approx(recipes.get("betavae").learning_rate * 0.2 ** 2, rel=1e-6)
  events = _read_events(os.path.join(workdir, "tensorboard"))
  assert {"train/loss", "train/images_per_second", "validation/mse", "validation/ssim",
          "reconstructions", "samples"} <= set(events)
  assert os.path.exists(os.path.join(workdir, "images", "reconstructions_00000005.png"))
  summary = json.load(open(os.path.join(workdir, "summary.json")))["train"]
  assert summary["steps"] == 5 and summary["resumed_from"] == 3
  assert 0 < summary["validation"]["mse"] < 0.1
  # SIGINT right after a scheduled checkpoint: that checkpoint is the one the message names.
  every2 = TrainOptions.from_config({**BASE, "steps": 5, "checkpoint_every": 2})
  with pytest.raises(TrainingInterrupted) as e:
    train_and_evaluate(every2, str(tmp_path / "every2"), print_fn=lambda s: None,
                       hooks=[lambda s, st: os.kill(os.getpid(), signal.SIGINT) if s == 2 else 0])
  assert e.value.code == 130 and "interrupted at step 2" in e.value.message
  assert checkpoint.load(str(tmp_path / "every2" / "export")).metadata["step"] == 2


TWO_DEVICES = """
import numpy as np, jax, jax.numpy as jnp
from jaxvae import models
from jaxvae.train import init, losses, optim, recipes, state as state_lib, step
assert len(jax.devices()) == 2
x = np.random.default_rng(0).random((3, 4, 64, 64, 3))
for name in ("betavae", "pvae"):
  r = recipes.get(name)
  model = models.build(name)
  config = step.StepConfig(model, losses.Spec(r.loss, r.beta, r.alpha), r.eps_std, r.eps_shared)
  tx = optim.make(r.optimizer, r.learning_rate)
  for dtype, steps in ((np.float32, 1), (np.float64, 3)) if name == "betavae" else (
      (np.float32, 1),):
    with jax.enable_x64(dtype == np.float64):
      variables = jax.tree.map(lambda a: np.asarray(a, dtype), init.original_init(name, model, 0))
      out = []
      for devices in (jax.devices()[:1], jax.devices()):
        mesh = step.make_mesh(devices)
        fn = step.jit_train_step(config, tx, mesh)
        s = step.put_replicated(mesh, state_lib.create(variables, tx, 0))
        for k in range(steps):
          s, m = fn(s, step.put_batch(mesh, x[k].astype(dtype)))
        out.append((float(m["loss"]), jax.device_get(s.variables)))
      (loss1, v1), (loss2, v2) = out
      assert abs(loss1 - loss2) <= 1e-5 * abs(loss1), (name, loss1, loss2)
      if dtype == np.float32:  # One step: the running statistics over the global batch.
        v1, v2 = v1["batch_stats"], v2["batch_stats"]
      diff = max(float(np.abs(a - b).max()) for a, b in zip(jax.tree.leaves(v1),
                                                             jax.tree.leaves(v2)))
      print(name, dtype.__name__, diff)
      assert diff <= 1e-5, (name, dtype, diff)
"""


def test_two_devices_train_like_one(tmp_path):
  """Batch sharded over 2 host devices, BatchNorm over the global batch, equal to 1 device within
  1e-5: the loss and running statistics of a float32 step (Beta-VAE with torch's BatchNorm, PVAE
  with Keras'), and every Beta-VAE variable after 3 steps in float64 (in float32, Adam turns the
  different rounding of near-zero gradients into steps of up to the learning rate: see
  test_train_parity); then a whole 2-device training run."""
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
  r = subprocess.run([sys.executable, "-c", TWO_DEVICES], cwd=REPO, capture_output=True,
                     text=True, timeout=600, env=env)
  assert r.returncode == 0, r.stderr[-3000:]
  r = _run_driver({**BASE, "steps": 2, "eval_every": 2}, str(tmp_path / "run"), env=env)
  assert r.returncode == 0 and "2 device(s)" in r.stdout, r.stderr[-2000:]


def test_bfloat16_step_tracks_float32():
  r = recipes.get("dfcvae")
  model = models.build("dfcvae")
  variables = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 64, 64, 3)))
  x = np.random.default_rng(0).random((4, 64, 64, 3)).astype(np.float32)
  eps = np.random.default_rng(1).standard_normal((4, 100)).astype(np.float32)
  results = {}
  for dtype in ("float32", "bfloat16"):
    config = step.StepConfig(model, losses.Spec(r.loss, r.beta, r.alpha), 1.0, False, dtype)
    fwd, grads = jax.jit(lambda p, s: step.gradients(config, p, s, x, eps))(
        variables["params"], variables["batch_stats"])
    assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(grads))  # float32 master weights
    results[dtype] = float(fwd.terms.loss)
  assert np.isfinite(results["bfloat16"])
  assert results["bfloat16"] == pytest.approx(results["float32"], rel=2e-2)


def test_perceptual_loss_trains_through_the_loop(tmp_path):
  """The Hou et al. loss wired through options and the loop, with a random-weight VGG19 stand-in
  saved as an auxiliary checkpoint (the real weights are a published name, not offline here)."""
  from jaxvae.nets import vgg19  # pylint: disable=import-outside-toplevel
  vgg_vars = jax.jit(vgg19.VGG19().init)(jax.random.key(0), jnp.zeros((1, 64, 64, 3)))
  vgg_dir = str(tmp_path / "vgg")
  checkpoint.save_tree(vgg_dir, vgg_vars, {"kind": vgg19.KIND})
  options = TrainOptions.from_config({**BASE, "steps": 2, "eval_every": 2,
                                      "loss": "perceptual", "perceptual_net": vgg_dir})
  spec = options.loss_spec(lambda a, b: jnp.mean(vgg19.feature_perceptual_loss(vgg_vars, a, b)))
  assert (spec.alpha, spec.beta) == (vgg19.FEATURE_WEIGHT, vgg19.KL_WEIGHT)
  # The loss equals 0.5 * mean feature MSE + 1 * mean KL, computed here independently.
  x01 = np.random.default_rng(0).random((2, 64, 64, 3)).astype(np.float32)
  y01 = np.random.default_rng(1).random((2, 64, 64, 3)).astype(np.float32)
  mean = np.random.default_rng(2).standard_normal((2, 8)).astype(np.float32)
  terms = losses.compute(spec, x01, y01, mean, np.zeros_like(mean), (0, 1), (0, 1))
  feats = vgg19.features(vgg_vars, np.concatenate([x01, y01]))
  expected = 0.5 * np.mean([sum(np.mean((np.asarray(f[b]) - np.asarray(f[b + 2])) ** 2)
                                for f in feats) for b in range(2)]) + np.mean(
                                    0.5 * np.sum(mean ** 2, axis=1))
  assert float(terms.loss) == pytest.approx(expected, rel=1e-5)
  result = train_and_evaluate(options, str(tmp_path / "run"), print_fn=lambda s: None)
  assert result.step == 2 and np.isfinite(result.validation["loss"])


def test_from_scratch_initialisation_is_the_originals():
  """torch's default bounds 1/sqrt(fan_in) (fan_in from torch's own helper, per layer), Keras'
  Glorot limits for the PVAE, BatchNorm at 1/0."""
  import torch  # pylint: disable=import-outside-toplevel
  from jaxvae.train import init  # pylint: disable=import-outside-toplevel
  from port.train_ref import torch_train  # pylint: disable=import-outside-toplevel
  for name, latent in (("vanilla", 200), ("betavae", 32), ("dfcvae", 100)):
    module = torch_train.CLASSES[name](latent)
    ours = init.original_init(name, models.build(name, latent_dim=latent), seed=0)
    bounds = {}
    for key, p in module.named_parameters():
      if p.ndim > 1:
        # pylint: disable-next=protected-access
        fan_in, _ = torch.nn.init._calculate_fan_in_and_fan_out(p)
        bounds[key] = bounds[key.replace("weight", "bias")] = 1 / np.sqrt(fan_in)
    flat = checkpoint.flatten(ours)
    for entry in torch_train.tables.TORCH_MODELS[name].table:
      v = flat[entry.flax_path]
      if entry.torch_key in bounds:
        assert np.abs(v).max() <= bounds[entry.torch_key], entry.flax_path
        if v.size > 100:
          assert np.abs(v).max() >= 0.95 * bounds[entry.torch_key], entry.flax_path
      else:  # BatchNorm
        expected = 1.0 if entry.torch_key.endswith(("weight", "running_var")) else 0.0
        assert np.all(v == expected), entry.flax_path
  pvae = checkpoint.flatten(init.original_init("pvae", models.build("pvae"), seed=0))
  kernel = pvae["params/encoder_1/conv/kernel"]  # 4x4, 32 -> 64
  limit = np.sqrt(6 / (16 * 32 + 16 * 64))
  assert limit * 0.95 <= np.abs(kernel).max() <= limit
  assert not pvae["params/encoder_1/conv/bias"].any()


def test_config_train_section_is_the_options_defaults():
  """configs/common.py's train section carries exactly TrainOptions' defaults (no drift)."""
  from configs import pvae
  fields = {f.name: f.default for f in dataclasses.fields(TrainOptions) if f.name != "model"}
  assert dict(pvae.get_config().train) == fields


def test_the_pvae_route_from_the_cli_train_then_every_mode_takes_the_export(tmp_path):
  """The second route the missing-checkpoint message names: train a PVAE by the original's recipe
  (here 3 steps on the bundled portraits), then its export is a checkpoint for the other modes."""
  from conftest import run_cli
  runs = tmp_path / "runs" / "pvae"
  result = run_cli("main.py", "--config=configs/pvae.py", "--mode=train", f"--workdir={runs}",
                   "--config.train.data=bundled:astronaut,bundled:grace_hopper",
                   "--config.train.steps=3", "--config.train.batch_size=2",
                   "--config.train.checkpoint_every=3", "--config.train.eval_every=3")
  assert result.returncode == 0, result.stderr
  assert (runs / "export" / "jaxvae.json").exists()
  out = tmp_path / "out"
  result = run_cli("main.py", "--config=configs/pvae.py", "--mode=variations",
                   f"--workdir={out}", f"--config.checkpoint={runs / 'export'}",
                   "--config.num_variations=2")
  assert result.returncode == 0, result.stderr
  assert np.load(out / "variations.npz")["variations"].shape == (2, 2, 64, 64, 3)
  bad = run_cli("main.py", "--config=configs/pvae.py", "--mode=train", f"--workdir={runs}",
                "--config.train.steps=0")
  assert bad.returncode == 1 and "config.train: invalid training options" in bad.stderr


def test_main_ports_no_config_checkpoint_for_train(monkeypatch):
  """--mode=train reads config.train.init_from, not config.checkpoint: main.py must not fetch the
  config's default published weights first (offline, with no mirror, that fetch fails)."""
  import main
  from configs import vanilla
  from jaxvae import options, weights
  monkeypatch.setattr(weights, "ensure_ported", lambda spec, log=None: f"ported:{spec}")
  config = vanilla.get_config()
  config.train.data = "bundled:astronaut"
  run = options.validate(config, "train")
  assert main._ported(run) is run
  other = main._ported(options.validate(config, "reconstruct"))
  assert other.common.checkpoint == f"ported:{config.checkpoint}"
