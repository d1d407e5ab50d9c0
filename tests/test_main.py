"""main.py end to end on the shared real Beta-VAE checkpoint: every mode, parity, bad input."""

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import PARITY_TOL, run_cli, shared_file
from port import torch_ref

MODE_ARRAYS = {  # mode -> (npz key, expected shape for the two bundled portraits)
    "reconstruct": ("reconstructions", (2, 64, 64, 3)),
    "variations": ("variations", (2, 3, 64, 64, 3)),
    "sample": ("samples", (5, 64, 64, 3)),
    "interpolate": ("paths", (1, 4, 64, 64, 3)),
    "edit": ("edited", (2, 3, 64, 64, 3)),
    "enhance": ("final", (2, 64, 64, 3)),
}


def _main(ckpt, workdir, mode, *overrides, config="configs/betavae.py"):
  return run_cli("main.py", f"--config={config}", f"--mode={mode}", f"--workdir={workdir}",
                 f"--config.checkpoint={ckpt}", *overrides)


@pytest.mark.parametrize("mode", list(MODE_ARRAYS))
def test_every_mode_writes_its_outputs(tmp_path, ported_dir, mode):
  ckpt = ported_dir("l200-100.pt")
  result = _main(ckpt, tmp_path, mode, "--config.num_variations=3", "--config.sample.num_samples=5",
                 "--config.interpolate.steps=4", "--config.edit.strengths=(0.0,1.0,2.0)")
  assert result.returncode == 0, result.stderr
  key, shape = MODE_ARRAYS[mode]
  with np.load(tmp_path / f"{mode}.npz") as npz:
    assert npz[key].shape == shape
    assert np.isfinite(npz[key]).all() and 0 <= npz[key].min() and npz[key].max() <= 1
  picture = np.asarray(Image.open(tmp_path / f"{mode}.png"))
  assert picture.ndim == 3 and picture.shape[0] > 64 and picture.shape[1] > 64
  summary = json.load(open(tmp_path / "summary.json"))
  assert list(summary) == [mode] and summary[mode]["model"] == "betavae"
  # A second run refuses to overwrite, and --overwrite replaces.
  again = _main(ckpt, tmp_path, mode)
  assert again.returncode != 0 and "--overwrite" in again.stderr


def test_reconstruct_matches_torch_original_and_reports_mse(tmp_path, ported_dir):
  result = _main(ported_dir("l200-100.pt"), tmp_path, "reconstruct")
  assert result.returncode == 0, result.stderr
  npz = np.load(tmp_path / "reconstruct.npz")
  reference = torch_ref.BetaVAE(200)
  reference.load_state_dict(torch.load(shared_file("l200-100.pt"), map_location="cpu",
                                       weights_only=True))
  reference.eval()
  with torch.inference_mode():
    x = torch.from_numpy(np.ascontiguousarray(npz["inputs"].transpose(0, 3, 1, 2)))
    mu, _ = reference.encode(x)
    expected = reference.decode(mu).numpy().transpose(0, 2, 3, 1)
  assert np.abs(npz["reconstructions"] - expected).max() <= PARITY_TOL
  summary = json.load(open(tmp_path / "summary.json"))["reconstruct"]
  mse = ((expected.astype(np.float64) - npz["inputs"]) ** 2).mean(axis=(1, 2, 3))
  np.testing.assert_allclose(summary["mse"], mse, rtol=1e-4)
  assert summary["names"] == ["bundled:astronaut", "bundled:grace_hopper"]


def test_modes_share_a_workdir_and_summary(tmp_path, ported_dir):
  ckpt = ported_dir("l32-100.pt")
  assert _main(ckpt, tmp_path, "reconstruct").returncode == 0
  assert _main(ckpt, tmp_path, "sample", "--config.sample.num_samples=2").returncode == 0
  assert set(json.load(open(tmp_path / "summary.json"))) == {"reconstruct", "sample"}


def test_non_image_among_images_is_skipped_and_named(tmp_path, ported_dir):
  faces = tmp_path / "faces"
  faces.mkdir()
  Image.fromarray(np.full((218, 178, 3), 120, np.uint8)).save(faces / "a.jpg")
  (faces / "readme.txt").write_text("hello")
  out = tmp_path / "out"
  result = _main(ported_dir("l200-100.pt"), out, "reconstruct", f"--config.input={faces}")
  assert result.returncode == 0, result.stderr
  assert "skipped" in result.stderr and "readme.txt" in result.stderr
  summary = json.load(open(out / "summary.json"))["reconstruct"]
  assert [os.path.basename(n) for n in summary["names"]] == ["a.jpg"]


@pytest.mark.parametrize("overrides,message", [
    (("--config.input={empty}",), "is empty"),
    (("--config.input={tmp}/missing.jpg",), "does not exist"),
    (("--config.num_variations=0",), "config.num_variations must be in [1, 4096]"),
    (("--config.input_noise_std=-0.5",), "config.input_noise_std must be >= 0"),
    (("--config.temperature=-1",), "config.temperature must be >= 0"),
    (("--config.num_variatons=3",), "bad config override: 'num_variatons'"),
    (("--config.checkpoint={tmp}/nowhere",), "neither a directory nor a published name"),
])
def test_bad_input_gives_a_clear_message_and_writes_nothing(tmp_path, ported_dir, overrides,
                                                           message):
  (tmp_path / "empty").mkdir()
  out = tmp_path / "out"
  args = [o.format(empty=tmp_path / "empty", tmp=tmp_path) for o in overrides]
  result = _main(ported_dir("l200-100.pt"), out, "variations", *args)
  assert result.returncode != 0
  assert message in result.stderr, result.stderr
  assert "Traceback" not in result.stderr
  assert not out.exists() or os.listdir(out) == []


@pytest.mark.parametrize("name,cls,latent", [("vanilla", torch_ref.VAE, 200),
                                             ("dfcvae", torch_ref.DFCVAE, 100)])
def test_other_torch_model_configs_run(tmp_path, name, cls, latent):
  """The published Vanilla and DFC checkpoints are not reachable offline: random weights instead."""
  from random_weights import randomize_torch
  from port import api
  path = str(tmp_path / "w.pt")
  torch.save(randomize_torch(cls(latent)).state_dict(), path)
  ckpt = api.port(name, path, str(tmp_path / "ckpt")).out_dir
  for mode in ("variations", "interpolate"):
    result = _main(ckpt, tmp_path / "out", mode, "--config.num_variations=2",
                   "--config.interpolate.steps=3", config=f"configs/{name}.py")
    assert result.returncode == 0, result.stderr
  with np.load(tmp_path / "out" / "variations.npz") as npz:
    assert npz["variations"].shape == (2, 2, 64, 64, 3)
  wrong = _main(ckpt, tmp_path / "out2", "reconstruct")  # A betavae config on another model.
  assert wrong.returncode != 0 and f"holds a '{name}' model" in wrong.stderr


def test_enhance_figure_and_postprocess_in_generation(tmp_path, ported_dir):
  """--mode=enhance draws the notebook's Figure 1 (preset figure1) with MSEs; config.postprocess
  (the report's chain) runs inside generation."""
  from jaxvae import postprocess
  ckpt = ported_dir("l200-100.pt")
  assert _main(ckpt, tmp_path, "enhance").returncode == 0
  summary = json.load(open(tmp_path / "summary.json"))["enhance"]
  assert list(summary["mean_mse"]) == ["reconstructed", "enhanced", "dehazed", "final"]
  assert summary["postprocess"] == "figure1"
  npz = np.load(tmp_path / "enhance.npz")
  final = np.asarray(postprocess.build_pipeline("figure1")(npz["reconstructed"]))
  np.testing.assert_allclose(npz["final"], final, atol=1e-6)
  np.testing.assert_allclose(summary["mse"]["final"],
                             ((final - npz["original"]) ** 2).mean(axis=(1, 2, 3)), rtol=1e-4)
  final = np.asarray(postprocess.build_pipeline("report")(npz["reconstructed"]))
  result = _main(ckpt, tmp_path, "reconstruct", "--config.postprocess=report")
  assert result.returncode == 0, result.stderr
  np.testing.assert_allclose(np.load(tmp_path / "reconstruct.npz")["reconstructions"], final,
                             atol=1e-6)
  bad = _main(ckpt, tmp_path / "bad", "variations", "--config.postprocess=blur")
  assert bad.returncode != 0 and "Unknown post-processing stage 'blur'" in bad.stderr
