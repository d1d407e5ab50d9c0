"""Parity of the flax modules with the torch originals on random weights; PVAE structure."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from conftest import PARITY_TOL
from random_weights import randomize_torch
from jaxvae import models
from port import convert, torch_ref

TORCH_MODELS = {  # name -> (torch class, latent size)
    "vanilla": (torch_ref.VAE, 200),
    "betavae": (torch_ref.BetaVAE, 32),
    "dfcvae": (torch_ref.DFCVAE, 100),
}


def _ported(name: str, seed: int):
  cls, latent = TORCH_MODELS[name]
  reference = randomize_torch(cls(latent), seed)
  state = {k: v.numpy() for k, v in reference.state_dict().items()}
  converted = convert.convert(name, state)
  return reference, converted.model, converted.variables


@pytest.mark.parametrize("name", list(TORCH_MODELS))
@pytest.mark.parametrize("batch", [1, 7])
def test_encode_decode_match_torch(name, batch):
  reference, model, variables = _ported(name, seed=batch)
  rng = np.random.default_rng(batch)
  x = models.to_model_range(rng.random((batch, 64, 64, 3), dtype=np.float32), model.input_range)
  x = np.asarray(x, np.float32)
  z = rng.standard_normal((batch, model.latent_dim), dtype=np.float32)
  with torch.inference_mode():
    mean_t, logvar_t = reference.encode(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))))
    recon_t = reference.decode(torch.from_numpy(z)).numpy().transpose(0, 2, 3, 1)
  mean, logvar = model.apply(variables, jnp.asarray(x), method=model.encode)
  recon = model.apply(variables, jnp.asarray(z), method=model.decode)
  assert np.abs(np.asarray(mean) - mean_t.numpy()).max() <= PARITY_TOL
  assert np.abs(np.asarray(logvar) - logvar_t.numpy()).max() <= PARITY_TOL
  assert np.abs(np.asarray(recon) - recon_t).max() <= PARITY_TOL
  # The outputs vary: a port that ignored its weights could not pass by returning constants.
  assert np.asarray(recon).std() > 1e-3


@pytest.mark.parametrize("name", list(TORCH_MODELS))
def test_full_forward_with_same_epsilon_matches_torch(name):
  reference, model, variables = _ported(name, seed=3)
  rng = np.random.default_rng(3)
  x = np.asarray(models.to_model_range(rng.random((4, 64, 64, 3), dtype=np.float32),
                                       model.input_range), np.float32)
  eps = rng.standard_normal((4, model.latent_dim), dtype=np.float32)
  with torch.inference_mode():
    recon_t, _, _ = reference(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))),
                              torch.from_numpy(eps))
  out = model.apply(variables, jnp.asarray(x), jnp.asarray(eps))
  assert np.abs(np.asarray(out.recon) - recon_t.numpy().transpose(0, 2, 3, 1)).max() <= PARITY_TOL


def test_betavae_output_floor_is_kept():
  """BN -> ReLU -> Sigmoid: every output pixel of the original is >= 0.5, and so is the port's."""
  _, model, variables = _ported("betavae", seed=5)
  z = jax.random.normal(jax.random.key(0), (16, model.latent_dim)) * 3
  recon = model.apply(variables, z, method=model.decode)
  assert float(recon.min()) >= 0.5


def _keras_param_counts(latent=100):
  """PVAE trainable and non-trainable parameter counts, from the Keras layer definitions."""
  conv = lambda k, cin, cout: k * k * cin * cout + cout
  enc = [(3, 32), (32, 64), (64, 128), (128, 256)]
  dec = [(256, 128), (128, 64), (64, 32)]
  bn_channels = [c for _, c in enc] + [c for _, c in dec]
  trainable = (sum(conv(4, a, b) for a, b in enc) + 2 * (4096 * latent + latent)
               + latent * 4096 + 4096 + sum(conv(3, a, b) for a, b in dec) + conv(3, 32, 3)
               + 2 * sum(bn_channels))
  return trainable, 2 * sum(bn_channels)


def test_pvae_structure():
  model = models.build("pvae")
  variables = models.init_variables(model, jax.random.key(0))
  params = sum(a.size for a in jax.tree.leaves(variables["params"]))
  stats = sum(a.size for a in jax.tree.leaves(variables["batch_stats"]))
  assert (params, stats) == _keras_param_counts()
  out = model.apply(variables, jnp.full((3, 64, 64, 3), 0.5))
  assert out.recon.shape == (3, 64, 64, 3) and out.mean.shape == out.logvar.shape == (3, 100)
  # The original's last conv is linear (0-255 scale); the sigmoid variant is bounded to [0, 1].
  assert model.output_range == (0.0, 255.0) and model.output_activation == "linear"
  sig = models.build("pvae", output_activation="sigmoid", output_range=(0.0, 1.0))
  z = 50.0 * jax.random.normal(jax.random.key(1), (4, 100))
  y = sig.apply(variables, z, method=sig.decode)
  assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
  # Keras BatchNorm eps 1e-3 and LeakyReLU 0.3: check on the first encoder block.
  bn = variables["batch_stats"]["encoder_0"]["bn"]
  assert bn["mean"].shape == (32,)


def test_pvae_keras_eps_and_slope():
  """With zero conv weights the first block outputs leaky(bn(bias)), so eps and slope show exactly."""
  model = models.build("pvae")
  variables = jax.tree.map(np.asarray, models.init_variables(model, jax.random.key(0)))
  block = variables["params"]["encoder_0"]
  block["conv"]["kernel"] = np.zeros_like(block["conv"]["kernel"])
  block["conv"]["bias"] = np.linspace(-1, 1, 32).astype(np.float32)
  variables["batch_stats"]["encoder_0"]["bn"]["var"] = np.full(32, 0.002, np.float32)
  sub = models.pvae.ConvBNLeaky(32, 4, 2)
  y = sub.apply({"params": block, "batch_stats": variables["batch_stats"]["encoder_0"]},
                jnp.zeros((1, 64, 64, 3)))
  normed = np.linspace(-1, 1, 32) / np.sqrt(0.002 + 1e-3)
  expected = np.where(normed > 0, normed, 0.3 * normed)
  np.testing.assert_allclose(np.asarray(y)[0, 5, 5], expected, rtol=1e-5)


def test_registry_rejects_unknown():
  with pytest.raises(ValueError, match="unknown model 'nope'"):
    models.build("nope")
  with pytest.raises(ValueError, match="has no field"):
    models.build("betavae", latnet_dim=3)
