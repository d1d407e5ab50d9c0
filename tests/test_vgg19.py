"""VGG19 port and DFC-VAE feature perceptual loss against torchvision's VGG19 (random weights)."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import closed_url, port_verified
from random_weights import randomize_torch
from torchvision_compat import import_torchvision
from jaxvae import checkpoint
from jaxvae.nets import vgg19
from port import api, sources
from port import vgg19 as port_vgg19
from port.torch_ref import vgg19 as torch_vgg19

FEATURE_TOL = 1e-5  # max |flax - torch| / max |torch| per layer, fp32.
LOSS_TOL = 1e-5  # |flax - torch| / |torch| per image.
GRAD_TOL = 1e-4  # max |flax - torch| / max |torch| of the loss gradient.


@pytest.fixture(scope="module")
def torchvision_vgg19():
  """torchvision's own vgg19 (classifier included), its default init plus random biases."""
  tv = import_torchvision()
  torch.manual_seed(0)
  return randomize_torch(tv.models.vgg19(weights=None), seed=0)


@pytest.fixture(scope="module")
def vgg_pth(torchvision_vgg19, tmp_path_factory):
  path = tmp_path_factory.mktemp("vgg19") / "random-vgg19.pth"
  torch.save(torchvision_vgg19.state_dict(), path)  # The published file's keys and shapes.
  return str(path)


@pytest.fixture(scope="module")
def cli_port(vgg_pth, tmp_path_factory):
  return port_verified("vgg19", vgg_pth, tmp_path_factory.mktemp("ported") / "vgg19")


def _torchvision_taps(model, x01):
  """relu1_1, relu2_1, relu3_1 of torchvision's vgg19.features on normalized NCHW input."""
  mean = torch.tensor(torch_vgg19.IMAGENET_MEAN).view(1, 3, 1, 1)
  std = torch.tensor(torch_vgg19.IMAGENET_STD).view(1, 3, 1, 1)
  x, taps = (x01 - mean) / std, {}
  for i, layer in enumerate(model.features[:12]):
    x = layer(x)
    for name, index in torch_vgg19.TAPS.items():
      if index == i:
        taps[name] = x.clone()
  return taps


def _nchw(a):
  return torch.from_numpy(np.ascontiguousarray(np.asarray(a).transpose(0, 3, 1, 2)))


def _images(seed, n=3, size=(64, 48)):
  return np.random.default_rng(seed).random((n, *size, 3), dtype=np.float32)


def test_published_url_and_normalization_are_torchvisions(torchvision_vgg19):
  tv = import_torchvision()
  weights = tv.models.VGG19_Weights.IMAGENET1K_V1
  assert weights.url == sources.PUBLISHED["vgg19-imagenet"].url
  preset = weights.transforms()
  assert tuple(preset.mean) == torch_vgg19.IMAGENET_MEAN
  assert tuple(preset.std) == torch_vgg19.IMAGENET_STD
  np.testing.assert_array_equal(vgg19.IMAGENET_MEAN, np.float32(preset.mean))
  np.testing.assert_array_equal(vgg19.IMAGENET_STD, np.float32(preset.std))
  # The relu indices of the taps: relu1_1, relu2_1, relu3_1 follow convs 1, 3 and 5.
  convs = [i for i, m in enumerate(torchvision_vgg19.features) if isinstance(m, torch.nn.Conv2d)]
  assert [i + 1 for i in convs[:5:2]] == list(torch_vgg19.TAPS.values())
  assert [index for _, index in port_vgg19.PORTED] == convs[:5]


def test_torch_reference_is_torchvisions_vgg19(torchvision_vgg19):
  reference = port_vgg19.torch_reference(
      {k: v.numpy() for k, v in torchvision_vgg19.state_dict().items()})
  x = _nchw(_images(0))
  with torch.inference_mode():
    ours, theirs = reference(x), _torchvision_taps(torchvision_vgg19, x)
  for name in vgg19.LAYERS:
    np.testing.assert_array_equal(ours[name].numpy(), theirs[name].numpy())


def test_cli_port_verify_ignores_exactly_the_unused_tensors(cli_port, vgg_pth):
  result, out = cli_port
  assert result.returncode == 0, result.stderr + result.stdout
  parity = dict(re.findall(r"(relu\d_1_relative|loss_relative) ([0-9.e+-]+)", result.stdout))
  assert len(parity) == 4 and all(float(v) <= api.TOLERANCE for v in parity.values()), parity
  state = torch.load(vgg_pth, weights_only=True)
  used = {e.torch_key for e in port_vgg19.TABLE}
  assert sorted(used) == [f"features.{i}.{p}" for i in (0, 10, 2, 5, 7) for p in ("bias", "weight")]
  assert sorted(port_vgg19.IGNORED) == sorted(set(state) - used)  # Everything else, by name.
  meta = checkpoint.read_metadata(out, ("kind",))
  assert meta["kind"] == "vgg19"
  assert sorted(meta["ignored_source_keys"]) == sorted(set(state) - used)
  assert "ignored 28 tensors" in result.stdout
  p = vgg19.load(out)["params"]
  np.testing.assert_array_equal(p["conv3_1"]["kernel"],
                                state["features.10.weight"].numpy().transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(p["conv1_2"]["bias"], state["features.2.bias"].numpy())


def test_features_and_loss_match_torchvision(cli_port, torchvision_vgg19):
  variables = vgg19.load(cli_port[1])
  x, y = _images(1), _images(2)
  got = vgg19.features(variables, x)
  with torch.inference_mode():
    fx, fy = (_torchvision_taps(torchvision_vgg19, _nchw(a)) for a in (x, y))
  for name in vgg19.LAYERS:
    want = fx[name].numpy().transpose(0, 2, 3, 1)
    assert np.abs(want).max() > 0.1 and (want > 0).mean() > 0.1  # Non-trivial activations.
    assert np.abs(np.asarray(getattr(got, name)) - want).max() <= FEATURE_TOL * np.abs(want).max()
  # The loss as written in the authors' reduction: torch's F.mse_loss per image and layer, summed.
  want = np.array([sum(F.mse_loss(fx[n][b], fy[n][b]).item() for n in vgg19.LAYERS)
                   for b in range(len(x))])
  loss = np.asarray(vgg19.feature_perceptual_loss(variables, jnp.asarray(x), jnp.asarray(y)))
  np.testing.assert_allclose(loss, want, rtol=LOSS_TOL)
  assert np.asarray(vgg19.feature_perceptual_loss(variables, x, x)).tolist() == [0.0] * len(x)


def test_loss_gradient_matches_torch_autograd(cli_port, torchvision_vgg19):
  variables = vgg19.load(cli_port[1])
  x, y = _images(3, n=2, size=(32, 32)), _images(4, n=2, size=(32, 32))
  grad = jax.grad(lambda a: jnp.mean(vgg19.feature_perceptual_loss(variables, a, y)))(x)
  xt = _nchw(x).requires_grad_(True)
  fx = _torchvision_taps(torchvision_vgg19, xt)
  with torch.no_grad():
    fy = _torchvision_taps(torchvision_vgg19, _nchw(y))
  sum(F.mse_loss(fx[n], fy[n]) for n in vgg19.LAYERS).backward()  # Mean over the batch too.
  want = xt.grad.numpy().transpose(0, 2, 3, 1)
  assert np.abs(want).max() > 0
  assert np.abs(np.asarray(grad) - want).max() <= GRAD_TOL * np.abs(want).max()


def test_loss_refuses_bad_shapes():
  variables = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), vgg19.abstract_variables())
  with pytest.raises(ValueError, match="two RGB image batches"):
    vgg19.feature_perceptual_loss(variables, jnp.zeros((2, 8, 8, 3)), jnp.zeros((2, 8, 4, 3)))
  with pytest.raises(ValueError, match="multiples of 4"):
    vgg19.feature_perceptual_loss(variables, jnp.zeros((1, 6, 8, 3)), jnp.zeros((1, 6, 8, 3)))


def test_missing_weights_error_names_file_url_and_mirror(tmp_path, monkeypatch):
  url = closed_url("vgg19-dcbb9e9d.pth")
  monkeypatch.setenv("JAXVAE_CACHE", str(tmp_path / "cache"))
  monkeypatch.delenv("JAXVAE_MIRROR", raising=False)
  pub = sources.PUBLISHED["vgg19-imagenet"]
  monkeypatch.setitem(sources.PUBLISHED, "vgg19-imagenet", pub._replace(url=url))
  with pytest.raises(sources.SourceError) as e:
    vgg19.load()
  for part in ("vgg19-dcbb9e9d.pth", pub.sha256, url, "$JAXVAE_MIRROR",
               "python -m port --model=vgg19 --source=PATH"):
    assert part in str(e.value), str(e.value)
