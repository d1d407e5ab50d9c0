"""The FID Inception-v3 port against pytorch-fid's network; FID and KID against the originals."""

import re
import shutil
import warnings

import numpy as np
import pytest
import torch

from conftest import closed_url, port_verified
from random_weights import random_inception
from torchvision_compat import import_torchvision
from jaxvae import checkpoint, fid, outputs
from jaxvae.nets import inception
from port import api, convert, sources
from port import inception as port_inception
from port.torch_ref import inception as torch_inception

FEATURE_TOL = 1e-4  # Issue 17: ||flax - pytorch-fid|| / ||pytorch-fid|| per image.
DISTANCE_TOL = 1e-6  # Issue 17: FID relative to pytorch-fid's calculate_frechet_distance.
INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"  # Its published file name.


@pytest.fixture(scope="module")
def inception_pth(tmp_path_factory):
  path = tmp_path_factory.mktemp("inception") / "random-inception.pth"
  torch.save(random_inception().state_dict(), path)
  return str(path)


@pytest.fixture(scope="module")
def pytorch_fid_net(inception_pth):
  """pytorch-fid's InceptionV3([3]) (resize and 2x - 1 on), its download replaced by our file."""
  import_torchvision()
  from pytorch_fid import inception as pf  # pylint: disable=import-outside-toplevel
  state = torch.load(inception_pth, weights_only=True)
  asked = []
  original = pf.load_state_dict_from_url
  pf.load_state_dict_from_url = lambda url, **kwargs: asked.append(url) or state
  try:
    net = pf.InceptionV3([pf.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()
  finally:
    pf.load_state_dict_from_url = original
  assert asked == [pf.FID_WEIGHTS_URL] == [sources.PUBLISHED["inception-fid"].url]
  return lambda x: net(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))[0][:, :, 0, 0].numpy()


@pytest.fixture(scope="module")
def cli_port(inception_pth, tmp_path_factory):
  return port_verified("inception", inception_pth, tmp_path_factory.mktemp("ported") / "inception")


def _images(n=3, size=(64, 64), seed=1):
  images = np.random.default_rng(seed).random((n, *size, 3), dtype=np.float32)
  images[-1] = 0.5  # A flat gray image as well.
  return images


def test_torch_reference_is_pytorch_fids_network(pytorch_fid_net, inception_pth):
  import_torchvision()
  from pytorch_fid import inception as pf  # pylint: disable=import-outside-toplevel
  original = pf.load_state_dict_from_url
  pf.load_state_dict_from_url = lambda url, **kwargs: torch.load(inception_pth, weights_only=True)
  try:
    theirs = pf.fid_inception_v3()  # Loads our file strictly: the same keys and shapes.
  finally:
    pf.load_state_dict_from_url = original
  assert sorted(theirs.state_dict()) == sorted(torch_inception.FIDInceptionV3().state_dict())
  reference = port_inception.torch_reference(sources.load_state_dict(inception_pth))
  x = _images(2)
  with torch.inference_mode():
    ours = reference(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
  np.testing.assert_array_equal(ours, pytorch_fid_net(x))  # Same torch ops: bit for bit.


def test_cli_port_verify_and_bitexact_round_trip(cli_port, inception_pth):
  result, out = cli_port
  assert result.returncode == 0, result.stderr + result.stdout
  parity = float(re.search(r"pool3_relative ([0-9.e+-]+)", result.stdout).group(1))
  assert parity <= api.TOLERANCE, result.stdout
  assert "ignored 2 tensors not used by the pool3 features: fc.bias, fc.weight" in result.stdout
  meta = checkpoint.read_metadata(out, ("kind",))
  assert meta["kind"] == "inception" and meta["ignored_source_keys"] == ["fc.bias", "fc.weight"]
  assert meta["source_sha256"] == outputs.sha256_file(inception_pth)
  state = torch.load(inception_pth, weights_only=True)
  variables = inception.load(out)
  p, s = variables["params"], variables["batch_stats"]
  np.testing.assert_array_equal(p["Conv2d_1a_3x3"]["conv"]["kernel"],
                                state["Conv2d_1a_3x3.conv.weight"].numpy().transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(p["Mixed_6b"]["branch7x7dbl_4"]["conv"]["kernel"],
                                state["Mixed_6b.branch7x7dbl_4.conv.weight"].numpy()
                                .transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(s["Mixed_7c"]["branch_pool"]["bn"]["var"],
                                state["Mixed_7c.branch_pool.bn.running_var"].numpy())
  n_tensors = len([k for k in state if not k.endswith("num_batches_tracked")])
  assert len(checkpoint.flatten(variables)) == n_tensors - 2 == len(port_inception.TABLE)


@pytest.mark.parametrize("n,size", [(3, (64, 64)), (2, (40, 72))])
def test_features_match_pytorch_fid(cli_port, pytorch_fid_net, n, size):
  variables = inception.load(cli_port[1])
  x = _images(n, size)
  want = pytorch_fid_net(x)
  got = inception.features(variables, x, batch_size=2)  # 3 images: a padded last batch.
  assert got.shape == (n, inception.FEATURE_DIM) and got.dtype == np.float32
  assert port_inception.relative_error(got, want) <= FEATURE_TOL
  # The input-dependent part too (random weights give features with a large common part).
  centred = want - want.mean(axis=0)
  assert np.linalg.norm(centred, axis=1).min() > 1e-3 * np.linalg.norm(want, axis=1).max()
  assert port_inception.relative_error(got - got.mean(axis=0), centred) <= FEATURE_TOL


def test_port_reports_every_problem_by_name(inception_pth, tmp_path):
  state = torch.load(inception_pth, weights_only=True)
  del state["Mixed_5b.branch5x5_2.bn.running_var"]
  state["Mixed_6a.branch3x3.conv.weight"] = torch.zeros(384, 288, 3, 1)
  state["AuxLogits.fc.weight"] = torch.zeros(1008, 768)
  path = tmp_path / "bad.pth"
  torch.save(state, path)
  with pytest.raises(convert.PortError) as e:
    api.port("inception", str(path), str(tmp_path / "out"))
  message = str(e.value)
  assert "missing: Mixed_5b.branch5x5_2.bn.running_var" in message
  assert "shape mismatch: Mixed_6a.branch3x3.conv.weight" in message
  assert "unexpected: AuxLogits.fc.weight" in message
  assert not (tmp_path / "out").exists()


def test_published_name_from_mirror_is_ported_once_into_the_cache(inception_pth, tmp_path,
                                                                  monkeypatch):
  monkeypatch.setenv("JAXVAE_CACHE", str(tmp_path / "cache"))
  mirror = tmp_path / "mirror"
  mirror.mkdir()
  shutil.copyfile(inception_pth, mirror / "renamed.pth")
  monkeypatch.setenv("JAXVAE_MIRROR", str(mirror))
  pub = sources.PUBLISHED["inception-fid"]
  monkeypatch.setitem(sources.PUBLISHED, "inception-fid", pub._replace(
      url=closed_url(INCEPTION_FILE), sha256=outputs.sha256_file(inception_pth)))
  variables = inception.load()
  cached = tmp_path / "cache" / "checkpoints" / "inception-fid"
  meta = checkpoint.read_metadata(str(cached), ("kind",))
  assert meta["kind"] == "inception" and meta["parity"]["pool3_relative"] <= api.TOLERANCE
  (mirror / "renamed.pth").unlink()  # Second use: the cached port, no source needed.
  again = inception.load()
  for a, b in zip(checkpoint.flatten(variables).values(), checkpoint.flatten(again).values()):
    np.testing.assert_array_equal(a, b)


def test_missing_weights_error_names_file_url_and_mirror(tmp_path, monkeypatch):
  monkeypatch.setenv("JAXVAE_CACHE", str(tmp_path / "cache"))
  (tmp_path / "empty").mkdir()
  monkeypatch.setenv("JAXVAE_MIRROR", str(tmp_path / "empty"))
  url = closed_url(INCEPTION_FILE)
  pub = sources.PUBLISHED["inception-fid"]
  monkeypatch.setitem(sources.PUBLISHED, "inception-fid", pub._replace(url=url))
  with pytest.raises(sources.SourceError) as e:
    inception.load()
  message = str(e.value)
  for part in ("pt_inception-2015-12-05-6726825d.pth", pub.sha256, url, "$JAXVAE_MIRROR",
               "python -m port --model=inception --source=PATH"):
    assert part in message, message


def test_running_statistics_equal_numpy_mean_and_cov():
  rng = np.random.default_rng(0)
  mix = rng.standard_normal((16, 16))
  feats = (1000.0 + rng.standard_normal((50, 16)) @ mix).astype(np.float32)
  stats = fid.RunningStatistics(16)
  for lo, hi in ((0, 7), (7, 8), (8, 38), (38, 50)):
    stats.update(feats[lo:hi])
  result = stats.result()
  # pytorch-fid's calculate_activation_statistics: np.mean(axis=0), np.cov(rowvar=False).
  want_mu = np.mean(feats.astype(np.float64), axis=0)
  want_sigma = np.cov(feats.astype(np.float64), rowvar=False)
  assert result.n == 50
  np.testing.assert_allclose(result.mu, want_mu, rtol=1e-13)
  np.testing.assert_allclose(result.sigma, want_sigma, rtol=0,
                             atol=1e-11 * np.abs(want_sigma).max())


def _pytorch_fid_distance(*args):
  import_torchvision()
  from pytorch_fid import fid_score  # pylint: disable=import-outside-toplevel
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # sqrtm(disp=False) in scipy 1.17.
    return fid_score.calculate_frechet_distance(*args)


@pytest.mark.parametrize("n1,n2", [(300, 200), (40, 50)])  # Full-rank, and singular (N < D).
def test_frechet_distance_matches_pytorch_fid(n1, n2):
  rng = np.random.default_rng(n1)
  mix = rng.standard_normal((64, 64)) / 8
  a = (rng.standard_normal((n1, 64)) @ mix).astype(np.float32)  # float32, as Inception's.
  b = (0.3 + 1.2 * rng.standard_normal((n2, 64)) @ mix).astype(np.float32)
  # pytorch-fid's calculate_activation_statistics, then its calculate_frechet_distance.
  stats = [(np.mean(x, axis=0), np.cov(x, rowvar=False)) for x in (a, b)]
  want = _pytorch_fid_distance(*stats[0], *stats[1])
  streamed = []
  for x in (a, b):
    running = fid.RunningStatistics(64)
    for lo in range(0, len(x), 16):
      running.update(x[lo:lo + 16])
    streamed.append(running.result())
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)
    warnings.simplefilter("ignore", fid.RankDeficientWarning)
    same_stats = fid.frechet_distance(*stats[0], *stats[1])
    end_to_end = fid.fid(*streamed)
  assert abs(same_stats - want) <= DISTANCE_TOL * abs(want), (same_stats, want)
  assert abs(end_to_end - want) <= DISTANCE_TOL * abs(want), (end_to_end, want)
  assert abs(fid.frechet_distance(*stats[0], *stats[0])) < 1e-6 * abs(want)


def test_fid_warns_when_covariance_is_singular():
  rng = np.random.default_rng(0)
  few, many = fid.RunningStatistics(8), fid.RunningStatistics(8)
  few.update(rng.standard_normal((8, 8)))
  many.update(rng.standard_normal((9, 8)))
  with pytest.warns(fid.RankDeficientWarning, match="FID from 8 images"):
    fid.fid(few.result(), many.result())
  with warnings.catch_warnings():
    warnings.simplefilter("error", fid.RankDeficientWarning)
    fid.fid(many.result(), many.result())


@pytest.mark.parametrize("gram_limit", [fid.KID_GRAM_LIMIT, 0])
def test_kid_matches_torch_fidelity(gram_limit):
  import_torchvision()
  from torch_fidelity import defaults, metric_kid  # pylint: disable=import-outside-toplevel
  assert (fid.KID_SUBSETS, fid.KID_SUBSET_SIZE, fid.KID_SEED) == (
      defaults.DEFAULTS["kid_subsets"], defaults.DEFAULTS["kid_subset_size"],
      defaults.DEFAULTS["rng_seed"])
  assert (defaults.DEFAULTS["kid_kernel"], defaults.DEFAULTS["kid_kernel_poly_degree"],
          defaults.DEFAULTS["kid_kernel_poly_gamma"], defaults.DEFAULTS["kid_kernel_poly_coef0"]
          ) == ("poly", 3, None, 1)
  rng = np.random.default_rng(0)
  x = rng.standard_normal((120, 32))
  y = 0.2 + rng.standard_normal((150, 32))
  want = metric_kid.kid_features_to_metric(torch.from_numpy(x), torch.from_numpy(y),
                                           kid_subsets=20, kid_subset_size=50, verbose=False)
  got = fid.kid(x, y, subsets=20, subset_size=50, gram_limit=gram_limit)
  np.testing.assert_allclose(got.mean, want["kernel_inception_distance_mean"], rtol=1e-9)
  np.testing.assert_allclose(got.std, want["kernel_inception_distance_std"], rtol=1e-9)
  assert got.mean > 2 * got.std > 0  # The shift is detected.


def test_kid_with_fewer_rows_than_the_subset_size_warns():
  rng = np.random.default_rng(0)
  with pytest.warns(fid.KIDSubsetWarning, match="subsets of 30 instead of 1000"):
    result = fid.kid(rng.standard_normal((30, 4)), rng.standard_normal((40, 4)))
  assert result.subset_size == 30 and np.isfinite(result.mean)


def test_reservoir_keeps_everything_in_order_until_full_then_a_uniform_sample():
  feats = np.arange(40, dtype=np.float32)[:, None]
  small = fid.Reservoir(capacity=50)
  small.update(feats[:25])
  small.update(feats[25:])
  np.testing.assert_array_equal(small.features, feats)
  counts = np.zeros(1000)
  for seed in range(300):
    reservoir = fid.Reservoir(capacity=50, seed=seed)
    for lo in range(0, 1000, 37):
      reservoir.update(np.arange(lo, min(lo + 37, 1000), dtype=np.float32)[:, None])
    kept = reservoir.features[:, 0].astype(int)
    assert reservoir.features.shape == (50, 1) and len(set(kept)) == 50
    counts[kept] += 1
  rate = counts / 300  # Each row is kept with probability 50 / 1000 = 0.05.
  for part in np.split(rate, 10):  # Early and late rows alike, in blocks of 100.
    assert abs(part.mean() - 0.05) < 0.006, rate.reshape(10, -1).mean(axis=1)


def test_feature_set_of_images_holds_their_features(cli_port):
  variables = inception.load(cli_port[1])
  images = _images(2, seed=2)
  feature_set = fid.FeatureSet()
  feature_set.add_images(variables, images)
  want = inception.features(variables, images)
  np.testing.assert_array_equal(feature_set.reservoir.features, want)
  result = feature_set.stats.result()
  assert result.n == 2 and result.sigma.shape == (2048, 2048)
  np.testing.assert_allclose(result.mu, want.astype(np.float64).mean(axis=0), rtol=1e-12)


def test_scores_are_fid_and_kid_of_the_two_sets():
  rng = np.random.default_rng(0)
  real, fake = fid.FeatureSet(dim=8), fid.FeatureSet(dim=8)
  a, b = rng.standard_normal((40, 8)), 0.5 + rng.standard_normal((30, 8))
  real.update(a[:25])
  real.update(a[25:])
  fake.update(b)
  result = fid.scores(real, fake, kid_subsets=5, kid_subset_size=20)
  assert (result.n_real, result.n_fake) == (40, 30)
  want = fid.frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0),
                              np.cov(b, rowvar=False))
  np.testing.assert_allclose(result.fid, want, rtol=1e-10)
  assert result.kid == fid.kid(a.astype(np.float32), b.astype(np.float32), 5, 20)


def test_bad_inputs_are_clear_errors():
  with pytest.raises(ValueError, match=r"RGB images \[N, H, W, 3\]"):
    inception.check_images(np.zeros((2, 8, 8, 4), np.float32))
  with pytest.raises(ValueError, match="float images in \\[0, 1\\] or uint8"):
    inception.check_images(np.zeros((2, 8, 8, 3), np.int16))
  np.testing.assert_array_equal(inception.check_images(np.full((1, 2, 2, 3), 255, np.uint8)), 1.0)
  with pytest.raises(ValueError, match="mismatched statistics"):
    fid.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
  with pytest.raises(ValueError, match=r"expected features \[N, 8\]"):
    fid.RunningStatistics(8).update(np.zeros((3, 9)))
  with pytest.raises(ValueError, match="NaN"):
    fid.FeatureSet(dim=2).update(np.array([[0.0, np.nan]]))
