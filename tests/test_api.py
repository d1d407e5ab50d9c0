"""The Python API (jaxvae.pretrained / jaxvae.VAE): the README's example as written, the engine
under jit and without it (chex variants), and clear errors for bad arguments."""

import os
import re

import chex
import jax
import numpy as np
import pytest
from absl.testing import parameterized

from conftest import BETA_VAE_DIR, REPO, shared_file
from random_weights import randomize_flax
from jaxvae import api, models, sampling


def _readme_example() -> str:
  text = open(os.path.join(REPO, "README.md")).read()
  section = text[text.index("## Python API"):]
  return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_example_runs_as_written(monkeypatch):
  shared_file("l200-100.pt")  # Skips (fails under CI) without the shared checkpoints.
  monkeypatch.setenv("JAXVAE_MIRROR", BETA_VAE_DIR)  # The offline route the README describes.
  code = _readme_example()
  assert len(code.strip().splitlines()) <= 6, code
  scope = {}
  exec(compile(code, "README.md", "exec"), scope)  # pylint: disable=exec-used
  faces, variations, recon = scope["faces"], scope["variations"], scope["recon"]
  assert faces.shape == (2, 64, 64, 3) and recon.shape == (2, 64, 64, 3)
  assert variations.shape == (2, 10, 64, 64, 3)
  assert 0 <= float(np.min(variations)) and float(np.max(variations)) <= 1
  assert float(np.std(np.asarray(variations)[:, 0] - np.asarray(variations)[:, 1])) > 1e-3


def _vae(name="dfcvae", latent=8, seed=0):
  model = models.build(name, latent_dim=latent)
  variables = randomize_flax(models.init_variables(model, jax.random.key(seed)), seed)
  return api.VAE(name, model, variables, chunk_size=3)


class EngineVariantsTest(chex.TestCase, parameterized.TestCase):
  """The engine's functions give the same arrays jitted and not, with the shapes they promise."""

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters("vanilla", "betavae", "dfcvae", "pvae")
  def test_encode_decode(self, name):
    vae = _vae(name)
    x = jax.random.uniform(jax.random.key(1), (5, 64, 64, 3))
    encode = self.variant(lambda x: sampling.encode(vae.model, vae.params, x, vae.chunk_size))
    mean, logvar = encode(x)
    chex.assert_shape([mean, logvar], (5, 8))
    decode = self.variant(lambda z: sampling.decode(vae.model, vae.params, z, vae.chunk_size))
    images = decode(mean)
    chex.assert_shape(images, (5, 64, 64, 3))
    chex.assert_tree_all_finite(images)
    chex.assert_trees_all_close(images, vae.reconstruct(x), atol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  def test_sample_posterior(self):
    mean, logvar = np.zeros((4, 8), np.float32), np.zeros((4, 8), np.float32)
    index = np.arange(4)
    fn = self.variant(lambda k: sampling._sample_posterior(  # pylint: disable=protected-access
        mean, logvar, k, index, sampling.Options()))
    z = fn(jax.random.key(3))
    chex.assert_shape(z, (4, 8))
    assert float(np.std(np.asarray(z))) > 0.5  # Standard normal draws around a zero mean.


def test_methods_and_shapes():
  vae = _vae()
  x = np.asarray(jax.random.uniform(jax.random.key(2), (3, 64, 64, 3)))
  assert vae.variations(x, 4, seed=1).shape == (3, 4, 64, 64, 3)
  np.testing.assert_array_equal(vae.variations(x, 4, seed=1), vae.variations(x, 4, seed=1))
  assert vae.sample(5, seed=2).shape == (5, 64, 64, 3)
  assert vae.interpolate(x[:2], x[1:], steps=3).shape == (2, 3, 64, 64, 3)
  direction = vae.attribute_direction(x[:1], x[1:])
  assert direction.shape == (8,)
  assert vae.edit(x, direction, (0.0, 1.0)).shape == (3, 2, 64, 64, 3)
  np.testing.assert_allclose(vae.edit(x, direction, (0.0,))[:, 0], vae.reconstruct(x), atol=1e-6)
  mean, _ = vae.encode(x)
  np.testing.assert_allclose(vae.decode(mean), vae.reconstruct(x), atol=1e-6)
  det = vae.variations(x, 2, seed=0, deterministic=True)
  np.testing.assert_allclose(det[:, 0], vae.reconstruct(x), atol=1e-6)


@pytest.mark.parametrize("call,message", [
    (lambda v, x: v.reconstruct(x[0]), "add a batch axis"),
    (lambda v, x: v.reconstruct((x * 255).astype(np.uint8)), "divide uint8 by 255"),
    (lambda v, x: v.reconstruct(x[:, :32]), "must be [N, 64, 64, 3]"),
    (lambda v, x: v.variations(x, 2, seed=-1), "seed must be an integer in [0, 2**32)"),
    (lambda v, x: v.decode(np.zeros((2, 7))), "z must be [N, 8]"),
    (lambda v, x: v.sample(2, temperature=-1.0), "temperature must be >= 0"),
    (lambda v, x: v.variations(x, 2, sampling_rule="odd"), "sampling rule must be one of"),
])
def test_bad_arguments_are_clear_errors(call, message):
  vae = _vae()
  x = np.asarray(jax.random.uniform(jax.random.key(2), (2, 64, 64, 3)))
  with pytest.raises(ValueError) as e:
    call(vae, x)
  assert message in str(e.value)


def test_pretrained_unknown_name_is_a_clear_error(tmp_path):
  from jaxvae import checkpoint
  with pytest.raises(checkpoint.CheckpointError, match="neither a directory nor a published name"):
    api.pretrained(str(tmp_path / "nowhere"))
