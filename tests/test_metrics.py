"""Metrics against independent references: numpy, a scipy SSIM, a PyTorch LPIPS."""

import io
import pickle

import dm_pix
import numpy as np
import pytest
from PIL import Image
from scipy import signal

from jaxvae import metrics


def _face(size: int = 64) -> np.ndarray:
  """A real photo (skimage's public-domain astronaut, face crop) as [size, size, 3] in [0, 1]."""
  from skimage import data  # pylint: disable=import-outside-toplevel
  image = Image.fromarray(data.astronaut()).crop((121, 12, 321, 212))
  return np.asarray(image.resize((size, size), Image.BILINEAR), np.float32) / 255.0


def _pairs(n: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """n >= 4 smooth images and distorted copies (noise, blur, contrast, shift) in [0, 1]."""
  rng = np.random.default_rng(seed)
  x = np.stack([np.asarray(Image.fromarray(rng.integers(0, 256, (5, 5, 3), np.uint8))
                           .resize((64, 64), Image.BICUBIC), np.float32) / 255.0
                for _ in range(n)])
  x[0] = _face()
  y = np.empty_like(x)
  y[0] = np.clip(x[0] + rng.normal(0, 0.1, x[0].shape), 0, 1)
  y[1] = np.asarray(Image.fromarray((x[1] * 255).astype(np.uint8)).resize((16, 16))
                    .resize((64, 64), Image.BILINEAR), np.float32) / 255.0
  y[2] = 0.5 + 0.4 * (x[2] - 0.5)
  y[3:] = np.roll(x[3:], 3, axis=2)
  return x, y


def test_mse_and_psnr_match_numpy():
  x, y = _pairs()
  want_mse = np.mean((x.astype(np.float64) - y) ** 2, axis=(1, 2, 3))
  np.testing.assert_allclose(metrics.mse(x, y), want_mse, rtol=1e-5)
  np.testing.assert_allclose(metrics.psnr(x, y), -10 * np.log10(want_mse), rtol=1e-5, atol=1e-4)
  assert np.all(np.isinf(np.asarray(metrics.psnr(x, x))))


def _ssim_reference(x: np.ndarray, y: np.ndarray) -> np.ndarray:
  """Wang et al. (2004) SSIM in float64 with scipy: 11x11 Gaussian (sigma 1.5), valid windows,
  C1 = (0.01 L)^2, C2 = (0.03 L)^2 with L = 1, averaged over the map and the channels."""
  g = signal.windows.gaussian(11, std=1.5)
  window = np.outer(g, g) / np.outer(g, g).sum()
  c1, c2 = 0.01 ** 2, 0.03 ** 2

  def blur(z):
    return signal.correlate2d(z, window, mode="valid")

  out = []
  for a_img, b_img in zip(x.astype(np.float64), y.astype(np.float64)):
    maps = []
    for c in range(a_img.shape[-1]):
      a, b = a_img[..., c], b_img[..., c]
      mu_a, mu_b = blur(a), blur(b)
      var_a, var_b = blur(a * a) - mu_a ** 2, blur(b * b) - mu_b ** 2
      cov = blur(a * b) - mu_a * mu_b
      maps.append((2 * mu_a * mu_b + c1) * (2 * cov + c2)
                  / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2)))
    out.append(np.mean(maps))
  return np.array(out)


def test_ssim_matches_scipy_reference():
  x, y = _pairs()
  want = _ssim_reference(x, y)
  assert want.min() < 0.9  # the distortions are strong enough to matter
  # float32 against float64: E[x^2] - mu^2 loses about 1e-6 per window.
  np.testing.assert_allclose(metrics.ssim(x, y), want, atol=1e-5)
  np.testing.assert_allclose(metrics.ssim(x, x), 1.0, atol=1e-5)
  np.testing.assert_allclose(metrics.ssim(x, 1.0 - x), _ssim_reference(x, 1.0 - x), atol=1e-5)


def test_ssim_fast_filter_equals_dm_pix_default():
  x, y = _pairs(seed=1)
  # Both run in float32; each is within 1.2e-5 of the float64 reference.
  np.testing.assert_allclose(metrics.ssim(x, y), dm_pix.ssim(x, y), atol=2e-5)


def test_ssim_rejects_tiny_images():
  with pytest.raises(ValueError, match="at least 11x11"):
    metrics.ssim(np.zeros((1, 8, 8, 3), np.float32), np.zeros((1, 8, 8, 3), np.float32))


def test_shape_mismatch_is_an_error():
  with pytest.raises(ValueError, match="one shape"):
    metrics.mse(np.zeros((2, 8, 8, 3), np.float32), np.zeros((2, 8, 9, 3), np.float32))


def test_lpips_zero_on_identical_pairs_and_symmetric():
  x, y = _pairs()
  np.testing.assert_allclose(metrics.lpips(x, x), 0.0, atol=1e-6)
  d_xy, d_yx = np.asarray(metrics.lpips(x, y)), np.asarray(metrics.lpips(y, x))
  assert np.all(d_xy > 1e-3)
  np.testing.assert_allclose(d_xy, d_yx, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("distortion", ["noise", "blur"])
def test_lpips_orders_distortion_strengths(distortion):
  rng = np.random.default_rng(0)
  face = _face()
  if distortion == "noise":
    mild, strong = (np.clip(face + rng.normal(0, s, face.shape), 0, 1).astype(np.float32)
                    for s in (0.03, 0.15))
  else:
    mild, strong = (np.asarray(Image.fromarray((face * 255).astype(np.uint8)).resize((k, k))
                               .resize((64, 64), Image.BILINEAR), np.float32) / 255.0
                    for k in (48, 16))
  x = np.stack([face, face])
  d = np.asarray(metrics.lpips(x, np.stack([mild, strong])))
  assert 0 < d[0] < d[1], d


def test_lpips_batch_independent():
  x, y = _pairs()
  batched = np.asarray(metrics.lpips(x, y))
  single = np.array([float(metrics.lpips(x[i:i + 1], y[i:i + 1])[0]) for i in range(len(x))])
  np.testing.assert_allclose(batched, single, rtol=1e-5, atol=1e-7)


# PyTorch LPIPS v0.1 written from richzhang/PerceptualSimilarity and torchvision's layer lists.
_TORCH_LAYERS = {
    # (kind, stride, padding) per torchvision `features` entry; taps after these ReLU indices.
    "alexnet": ([("conv", 4, 2), ("relu",), ("pool", 3, 2), ("conv", 1, 2), ("relu",),
                 ("pool", 3, 2), ("conv", 1, 1), ("relu",), ("conv", 1, 1), ("relu",),
                 ("conv", 1, 1), ("relu",)], (1, 4, 7, 9, 11)),
    "vgg16": ([("conv", 1, 1), ("relu",), ("conv", 1, 1), ("relu",), ("pool", 2, 2),
               ("conv", 1, 1), ("relu",), ("conv", 1, 1), ("relu",), ("pool", 2, 2)]
              + [("conv", 1, 1), ("relu",)] * 3 + [("pool", 2, 2)]
              + [("conv", 1, 1), ("relu",)] * 3 + [("pool", 2, 2)]
              + [("conv", 1, 1), ("relu",)] * 3, (3, 8, 15, 22, 29)),
}


def _torch_lpips(net: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
  torch = pytest.importorskip("torch")
  f = torch.nn.functional
  params = metrics.lpips_params(net)["params"]
  backbone = params["AlexNet_0" if net == "alexnet" else "VGG16_0"]
  convs = [(torch.tensor(np.asarray(backbone[f"Conv_{k}"]["kernel"])).permute(3, 2, 0, 1),
            torch.tensor(np.asarray(backbone[f"Conv_{k}"]["bias"]))) for k in range(len(backbone))]
  lins = [torch.tensor(np.asarray(params[f"NetLinLayer_{k}"]["Conv_0"]["kernel"]))
          .permute(3, 2, 0, 1) for k in range(5)]
  layers, taps = _TORCH_LAYERS[net]
  shift = torch.tensor([-.030, -.088, -.188]).view(1, 3, 1, 1)
  scale = torch.tensor([.458, .448, .450]).view(1, 3, 1, 1)

  def features(images):
    h = (torch.tensor(images).permute(0, 3, 1, 2) * 2 - 1 - shift) / scale
    out, conv = [], iter(convs)
    for k, layer in enumerate(layers):
      if layer[0] == "conv":
        w, b = next(conv)
        h = f.conv2d(h, w, b, stride=layer[1], padding=layer[2])
      elif layer[0] == "relu":
        h = f.relu(h)
      else:
        h = f.max_pool2d(h, layer[1], layer[2])
      if k in taps:
        out.append(h / (torch.sqrt(torch.sum(h ** 2, dim=1, keepdim=True)) + 1e-10))
    return out

  with torch.no_grad():
    total = sum(f.conv2d((a - b) ** 2, lin).mean([2, 3], keepdim=True)
                for a, b, lin in zip(features(x), features(y), lins))
  return total.reshape(-1).numpy()


@pytest.mark.parametrize("net", ["alexnet", "vgg16"])
def test_lpips_matches_pytorch_reference(net):
  x, y = (a[:3] for a in _pairs(seed=2))
  want = _torch_lpips(net, x, y)
  assert want.min() > 1e-3
  np.testing.assert_allclose(metrics.lpips(x, y, net=net), want, rtol=1e-4, atol=1e-6)


def test_lpips_weights_hash_is_checked(monkeypatch):
  metrics.lpips_params.cache_clear()
  monkeypatch.setitem(metrics.LPIPS_SHA256, "alexnet", "0" * 64)
  try:
    with pytest.raises(ValueError, match="sha256"):
      metrics.lpips_params("alexnet")
  finally:
    metrics.lpips_params.cache_clear()


def test_lpips_unknown_net():
  with pytest.raises(ValueError, match="unknown LPIPS network"):
    metrics.lpips_params("squeeze")


def test_weights_unpickler_admits_only_arrays():
  ok = metrics._NumpyOnlyUnpickler(io.BytesIO(pickle.dumps({"w": np.arange(3.0)}))).load()
  np.testing.assert_array_equal(ok["w"], np.arange(3.0))
  with pytest.raises(pickle.UnpicklingError, match="only hold numpy arrays"):
    metrics._NumpyOnlyUnpickler(io.BytesIO(pickle.dumps(print))).load()


def test_reconstruction_metrics_equal_the_single_metrics():
  x, y = _pairs()
  got = metrics.reconstruction_metrics(x, y)
  assert set(got) == {"mse", "psnr", "ssim", "lpips"}
  for name in ("mse", "psnr", "ssim", "lpips"):
    np.testing.assert_allclose(got[name], getattr(metrics, name)(x, y), rtol=1e-5, atol=1e-7)
  assert set(metrics.reconstruction_metrics(x, y, net=None)) == {"mse", "psnr", "ssim"}


def test_diversity_matches_its_definition():
  rng = np.random.default_rng(3)
  base = _pairs(seed=3)[0][:2]
  v = np.clip(base[:, None] + rng.normal(0, [[0.02], [0.1], [0.2]], (2, 3, 1))[..., None, None]
              * rng.standard_normal((2, 3, 64, 64, 3)), 0, 1).astype(np.float32)
  got = metrics.diversity(v)
  pairs = [(0, 1), (0, 2), (1, 2)]
  want_pixel = [np.mean([np.sqrt(np.mean((v[b, i].astype(np.float64) - v[b, j]) ** 2))
                         for i, j in pairs]) for b in range(2)]
  np.testing.assert_allclose(got.pixel, want_pixel, rtol=1e-5)
  want_lpips = np.mean([np.asarray(metrics.lpips(v[:, i], v[:, j])) for i, j in pairs], axis=0)
  np.testing.assert_allclose(got.lpips, want_lpips, rtol=1e-5, atol=1e-7)
  assert np.all(np.asarray(got.lpips) > 1e-3)


def test_diversity_of_equal_variations_is_zero():
  v = np.repeat(_pairs()[0][:2, None], 4, axis=1)
  got = metrics.diversity(v)
  np.testing.assert_allclose(got.pixel, 0.0, atol=1e-7)
  np.testing.assert_allclose(got.lpips, 0.0, atol=1e-6)
  assert metrics.diversity(v, net=None).lpips is None


def test_diversity_needs_two_variations():
  with pytest.raises(ValueError, match="at least 2 variations"):
    metrics.diversity(np.zeros((2, 1, 64, 64, 3), np.float32))
  with pytest.raises(ValueError, match=r"\[B, K, H, W, C\]"):
    metrics.diversity(np.zeros((2, 64, 64, 3), np.float32))
