"""Latent traversals (--mode=traverse) and CelebA attribute vectors (--config.edit.attribute)."""

import json
import os

import numpy as np
import pytest
from PIL import Image

import fake_celeba
from conftest import run_cli
from jaxvae import api, celeba, directions, models


def _main(ckpt, workdir, mode, *overrides):
  return run_cli("main.py", "--config=configs/betavae.py", f"--mode={mode}",
                 f"--workdir={workdir}", f"--config.checkpoint={ckpt}", *overrides)


def test_traversal_moves_one_dimension_from_the_mean(ported_dir, portraits):
  vae = api.load(ported_dir("l32-100.pt"))
  t = vae.traverse(portraits, num_dims=3, values=(-2.0, 0.0, 2.0), std="posterior")
  mean, logvar = (np.asarray(a, np.float64) for a in vae.encode(portraits))
  kl = 0.5 * (mean ** 2 + np.exp(logvar) - 1 - logvar)  # KL(N(mu, s^2) || N(0, 1)) per dim
  np.testing.assert_allclose(t.kl, kl, rtol=1e-6, atol=1e-9)
  for k in range(len(portraits)):
    assert list(t.dims[k]) == list(np.argsort(-kl[k])[:3])  # Largest KL first.
    d = t.dims[k][1]
    z = mean[k].copy()
    z[d] += 2.0 * np.exp(0.5 * logvar[k, d])  # v = +2 posterior standard deviations
    want = np.asarray(vae.decode(z[None].astype(np.float32)))[0]
    np.testing.assert_allclose(np.asarray(t.images[k, 1, 2]), want, atol=1e-5)
  np.testing.assert_allclose(np.asarray(t.images[:, :, 1]),  # v = 0 is the reconstruction
                             np.repeat(np.asarray(vae.reconstruct(portraits))[:, None], 3, 1),
                             atol=1e-5)


def test_traverse_mode_writes_a_grid_per_input_and_the_kl(tmp_path, ported_dir):
  out = tmp_path / "out"
  result = _main(ported_dir("l32-100.pt"), out, "traverse", "--config.traverse.num_dims=4")
  assert result.returncode == 0, result.stderr
  assert "bundled:astronaut: KL" in result.stderr and "largest: z" in result.stderr
  summary = json.load(open(out / "summary.json"))["traverse"]
  npz = np.load(out / "traverse.npz")
  assert npz["traversals"].shape == (2, 4, 7, 64, 64, 3) and npz["kl"].shape == (2, 32)
  for k, entry in enumerate(summary["inputs"]):
    assert [d["dim"] for d in entry["dims"]] == list(npz["dims"][k])
    assert entry["kl_total"] == pytest.approx(float(npz["kl"][k].sum()))
    grid = np.asarray(Image.open(out / entry["png"]))
    assert grid.shape[0] > 4 * 64 and grid.shape[1] > 7 * 64


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("celeba"))
  return root, fake_celeba.write_fake_celeba(root, n=40)


def test_attribute_vectors_are_mean_latent_differences_and_cached(tree, ported_dir, monkeypatch,
                                                                  tmp_path):
  monkeypatch.setenv("JAXVAE_CACHE", str(tmp_path / "cache"))
  root, fake = tree
  vae = api.load(ported_dir("l32-100.pt"))
  found = directions.load_or_compute(vae, root, "train", 0)
  # Independently: every train image, cropped as the model's box, encoded one at a time.
  train = fake.index("train")
  box = models.get_info("betavae").celeba_box
  mu = np.concatenate([np.asarray(vae.encode(celeba.preprocess(fake.pixels[fake.names[i]], box,
                                                               64)[None])[0]) for i in train])
  smiling = fake.attributes[train, celeba.ATTR_NAMES.index("Smiling")] > 0
  want = mu[smiling].mean(0) - mu[~smiling].mean(0)
  np.testing.assert_allclose(found.get("Smiling"), want, atol=1e-5)
  assert found.n_images == len(train) and found.n_with[31] == smiling.sum()
  # Cached: a second call reads the file and computes nothing.
  monkeypatch.setattr(directions, "compute", lambda *a, **k: pytest.fail("recomputed"))
  np.testing.assert_array_equal(directions.load_or_compute(vae, root, "train", 0).vectors,
                                found.vectors)
  with pytest.raises(ValueError, match="unknown CelebA attribute"):
    found.get("Happy")


def test_edit_with_an_attribute_from_the_cli(tmp_path, tree, ported_dir):
  root, _ = tree
  out = tmp_path / "out"
  result = _main(ported_dir("l32-100.pt"), out, "edit", f"--config.celeba={root}",
                 "--config.edit.attribute=Smiling", "--config.edit.strengths=(0.0,2.0)")
  assert result.returncode == 0, result.stderr
  summary = json.load(open(out / "summary.json"))["edit"]
  assert summary["attribute"] == "Smiling" and summary["n_with"] + summary["n_without"] == 24
  npz = np.load(out / "edit.npz")
  assert npz["edited"].shape == (2, 2, 64, 64, 3) and np.linalg.norm(npz["direction"]) > 0
  no_celeba = _main(ported_dir("l32-100.pt"), tmp_path / "o2", "edit",
                    "--config.edit.attribute=Smiling")
  assert no_celeba.returncode == 1 and "needs CelebA" in no_celeba.stderr
  unknown = _main(ported_dir("l32-100.pt"), tmp_path / "o3", "edit", f"--config.celeba={root}",
                  "--config.edit.attribute=Happy")
  assert unknown.returncode == 1 and "config.edit.attribute must be one of" in unknown.stderr
  assert not os.path.exists(tmp_path / "o2") or not os.listdir(tmp_path / "o2")
