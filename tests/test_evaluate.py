"""--mode=evaluate end to end on a fake CelebA tree with the shared Beta-VAE checkpoints."""

import json
import os

import numpy as np
import pytest

import fake_celeba
from conftest import run_cli

SMALL = ("--config.batch_size=8", "--config.num_variations=3", "--config.evaluate.bootstrap=200")


def _evaluate(workdir, ckpt, *overrides):
  return run_cli("main.py", "--config=configs/betavae.py", "--mode=evaluate",
                 f"--workdir={workdir}", f"--config.checkpoint={ckpt}", *SMALL, *overrides)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("celeba"))
  fake = fake_celeba.write_fake_celeba(root, n=60)
  return root, fake


def test_evaluate_writes_all_outputs_and_resumes(tmp_path, tree, ported_dir):
  root, fake = tree
  l200, l32 = ported_dir("l200-100.pt"), ported_dir("l32-100.pt")
  out = tmp_path / "eval"
  result = _evaluate(out, l200, f"--config.celeba={root}", f"--config.evaluate.checkpoints={l32}",
                     "--config.postprocess=report")
  assert result.returncode == 0, result.stderr
  assert "batch 2/2: 12/12 images" in result.stderr  # Progress is shown.
  metrics = json.load(open(out / "metrics.json"))
  assert list(metrics["models"]) == ["betavae-l200", "betavae-l32"]
  n_test = int((np.asarray(fake.splits) == 2).sum())
  for label, model in metrics["models"].items():
    assert model["n"] == n_test == 12
    for kind in ("deterministic", "sampled", "postprocessed"):
      for score in ("mse", "psnr", "ssim", "lpips"):
        assert np.isfinite(model["metrics"][f"{kind}/{score}"]["mean"]), (label, kind, score)
    assert model["metrics"]["diversity/pixel"]["mean"] > 0
    assert model["metrics"]["diversity/lpips"]["mean"] > 0
    assert len(model["bias"]) == 40
    eyeglasses = model["bias"]["Eyeglasses"]
    assert eyeglasses["gap_ci"][0] <= eyeglasses["gap"] <= eyeglasses["gap_ci"][1]
    assert model["regression"] is None  # 12 images cannot fit 40 attributes.
  # The per-image MSE behind the bias table is the deterministic reconstruction's.
  cache = out / "evaluate_cache" / "betavae-l200"
  per_image = np.concatenate([np.load(cache / f"batch_{b:05d}.npz")["deterministic/mse"]
                              for b in range(2)])
  has = np.asarray(fake.attributes)[np.asarray(fake.splits) == 2][:, 15] == 1  # Eyeglasses
  assert abs(metrics["models"]["betavae-l200"]["bias"]["Eyeglasses"]["gap"]
             - (per_image[has].mean() - per_image[~has].mean())) < 1e-9
  report = (out / "report.md").read_text()
  assert "| betavae-l32 | 12 | deterministic |" in report and "| Eyeglasses |" in report
  for png in ("evaluate_models.png", "evaluate_bias_betavae-l200.png",
              "evaluate_faces_betavae-l32.png"):
    assert (out / png).stat().st_size > 1000

  # Interrupted run: one batch and the whole final output set are gone (an interrupted run never
  # commits them); only that batch is recomputed.
  os.remove(cache / "batch_00001.npz")
  for name in os.listdir(out):
    if (out / name).is_file():
      os.remove(out / name)
  again = _evaluate(out, l200, f"--config.celeba={root}", f"--config.evaluate.checkpoints={l32}",
                    "--config.postprocess=report")
  assert again.returncode == 0, again.stderr
  assert "[betavae-l200] resumed 1 finished batch(es)" in again.stderr
  assert "[betavae-l32] resumed 2 finished batch(es)" in again.stderr
  resumed = json.load(open(out / "metrics.json"))
  for label in metrics["models"]:
    for key, value in metrics["models"][label]["metrics"].items():
      assert resumed["models"][label]["metrics"][key]["mean"] == pytest.approx(value["mean"],
                                                                              rel=1e-6)

  # Other settings in the same workdir (whose final outputs were never committed) are refused
  # rather than mixed.
  for name in os.listdir(out):
    if (out / name).is_file():
      os.remove(out / name)
  mixed = _evaluate(out, l200, f"--config.celeba={root}", "--config.seed=1")
  assert mixed.returncode != 0 and "holds an evaluation with other settings" in mixed.stderr


def test_evaluate_without_celeba_uses_the_inputs(tmp_path, ported_dir):
  out = tmp_path / "eval"
  result = _evaluate(out, ported_dir("l32-100.pt"), "--config.evaluate.lpips_net=")
  assert result.returncode == 0, result.stderr
  model = json.load(open(out / "metrics.json"))["models"]["betavae-l32"]
  assert model["n"] == 2 and "bias" not in model and "deterministic/lpips" not in model["metrics"]


def test_evaluate_wrong_root_is_a_clear_error(tmp_path, ported_dir):
  result = _evaluate(tmp_path / "eval", ported_dir("l32-100.pt"),
                     f"--config.celeba={tmp_path / 'nowhere'}")
  assert result.returncode != 0 and "Traceback" not in result.stderr
  assert "nowhere" in result.stderr


def test_evaluate_fid_and_kid_of_reconstructions_and_samples(tmp_path, ported_dir):
  """--config.evaluate.fid: the inputs, their reconstructions and prior samples through the
  Inception-v3 (random weights, ported); the reconstructions' FID equals pytorch-fid's distance
  on the same features."""
  import torch
  from random_weights import random_inception
  from torchvision_compat import import_torchvision
  import_torchvision()  # pytorch-fid imports torchvision (see tests/torchvision_compat.py).
  from pytorch_fid.fid_score import calculate_frechet_distance
  from jaxvae import api
  from jaxvae.nets import inception
  from port import api as port_api
  src = tmp_path / "inception.pth"
  torch.save(random_inception().state_dict(), src)
  weights = port_api.port("inception", str(src), str(tmp_path / "inception")).out_dir
  from configs import betavae
  from jaxvae import generate, modes, options
  ckpt = ported_dir("l32-100.pt")
  out = tmp_path / "eval"
  gen = generate.generate(api.load(ckpt), "", str(tmp_path / "gen"), num_variations=2,
                          batch_size=2, log=lambda s: None)
  assert gen["records"] == 4
  config = betavae.get_config("l32")
  config.checkpoint, config.num_variations, config.batch_size = ckpt, 2, 8
  config.evaluate.lpips_net, config.evaluate.fid, config.evaluate.fid_weights = "", True, weights
  config.evaluate.generated = str(tmp_path / "gen")  # And a --mode=generate output.
  modes.get("evaluate")(options.validate(config, "evaluate"), str(out))  # In process: one compile.
  scores = json.load(open(out / "metrics.json"))["models"]["betavae-l32"]["fid"]
  assert any("2048" in w for w in scores["warnings"])  # Too few images for a full-rank covariance.
  assert scores["n"] == 2 and scores["warnings"]
  vae = api.load(ckpt)
  x = vae.load_images("")
  variables = inception.load(weights)
  real, recon = (inception.features(variables, a).astype(np.float64)
                 for a in (x, np.asarray(vae.reconstruct(x))))
  want = calculate_frechet_distance(real.mean(0), np.cov(real, rowvar=False),
                                    recon.mean(0), np.cov(recon, rowvar=False))
  assert scores["reconstructions"]["fid"] == pytest.approx(want, rel=1e-4)
  assert np.isfinite(scores["samples"]["fid"]) and scores["samples"]["fid"] > 0
  assert "FID and KID" in (out / "report.md").read_text()
  scored = json.load(open(out / "metrics.json"))["generated"]
  assert scored["n_generated"] == 4 and scored["n_real"] == 2, scored
  assert np.isfinite(scored["fid"]) and scored["fid"] > 0
  assert f"Generated images of {tmp_path / 'gen'}" in (out / "report.md").read_text()
