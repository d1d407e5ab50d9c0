"""The fast path (jaxvae/fast/) equals the reference flax modules and the torch originals."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from conftest import PARITY_TOL, shared_file
from random_weights import randomize_flax, randomize_torch
from jaxvae import chunking, fast, models, schedule
from port import convert, sources, torch_ref

VARIANTS = [("vanilla", {}), ("vanilla", {"output_activation": "sigmoid"}), ("betavae", {}),
            ("dfcvae", {}), ("pvae", {}), ("pvae", {"output_activation": "sigmoid"})]

encode_jit = jax.jit(fast.encode, static_argnums=(0, 3))
decode_jit = jax.jit(fast.decode, static_argnums=(0, 3))


def _random_variables(model, seed: int):
  return randomize_flax(models.init_variables(model, jax.random.key(seed)), seed)


def _max_diffs(model, variables, batch: int, seed: int, chunk: int = 0):
  rng = np.random.default_rng(seed)
  x = jnp.asarray(models.to_model_range(rng.random((batch, 64, 64, 3), dtype=np.float32),
                                        model.input_range))
  z = jnp.asarray(2 * rng.standard_normal((batch, model.latent_dim), dtype=np.float32))
  mean, logvar = model.apply(variables, x, method=model.encode)
  recon = model.apply(variables, z, method=model.decode)
  prepared = fast.prepare_jit(model, variables)
  mean_f, logvar_f = encode_jit(model, prepared, x, chunk)
  recon_f = decode_jit(model, prepared, z, chunk)
  scale = models.to_unit_range(recon, model.output_range)  # outputs compared on [0, 1] too
  return {"mean": float(jnp.abs(mean - mean_f).max()),
          "logvar": float(jnp.abs(logvar - logvar_f).max()),
          "recon": float(jnp.abs(recon - recon_f).max()),
          "recon01": float(jnp.abs(scale - models.to_unit_range(recon_f, model.output_range)).max()),
          "std": float(recon.std())}


@pytest.mark.parametrize("name,fields", VARIANTS)
@pytest.mark.parametrize("batch,chunk", [(1, 0), (7, 0), (7, 3)])  # 7 in chunks of 3: padded
def test_fast_equals_reference_on_random_weights(name, fields, batch, chunk):
  model = models.build(name, **fields)
  d = _max_diffs(model, _random_variables(model, seed=batch), batch, seed=batch, chunk=chunk)
  assert d["mean"] <= PARITY_TOL and d["logvar"] <= PARITY_TOL, d
  # The PVAE's linear output is on the 0-255 scale: 1e-5 on [0, 1] there.
  assert (d["recon01"] if model.output_range[1] > 1 else d["recon"]) <= PARITY_TOL, d
  assert d["std"] > 1e-3, d  # Outputs that vary: constants could not pass by accident.


@functools.lru_cache(maxsize=None)
def _betavae_checkpoint(name: str):
  state = sources.load_state_dict(shared_file(name))
  converted = convert.convert("betavae", state)
  module = torch_ref.BetaVAE(converted.model.latent_dim)
  module.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
  return converted.model, converted.variables, module.eval()


@pytest.mark.parametrize("name", ["l32-100.pt", "l200-100.pt"])
def test_fast_equals_reference_on_published_betavae(name):
  model, variables, _ = _betavae_checkpoint(name)
  d = _max_diffs(model, variables, 7, seed=0)
  assert max(d["mean"], d["logvar"], d["recon"]) <= PARITY_TOL, d


def test_fast_matches_orbax_ported_betavae(betavae_l200, portraits):
  """Through the real port (api.port -> Orbax -> checkpoint.load), on real faces."""
  model, variables = betavae_l200.model, betavae_l200.variables
  x = jnp.asarray(portraits)
  mean, logvar = model.apply(variables, x, method=model.encode)
  mean_f, logvar_f = encode_jit(model, variables, x)  # raw variables: prepared inside the trace
  assert float(jnp.abs(mean - mean_f).max()) <= PARITY_TOL
  assert float(jnp.abs(logvar - logvar_f).max()) <= PARITY_TOL
  recon = model.apply(variables, mean, method=model.decode)
  assert float(jnp.abs(recon - decode_jit(model, variables, mean)).max()) <= PARITY_TOL


def test_fast_matches_torch_originals():
  """Fast path vs the torch originals directly: DFC-VAE (random weights) and the published Beta-VAE l200."""
  dfc = randomize_torch(torch_ref.DFCVAE(100), seed=11)
  converted = convert.convert("dfcvae", {k: v.numpy() for k, v in dfc.state_dict().items()})
  beta_model, beta_variables, beta = _betavae_checkpoint("l200-100.pt")
  cases = [(dfc, converted.model, converted.variables), (beta, beta_model, beta_variables)]
  rng = np.random.default_rng(11)
  for module, model, variables in cases:
    x = rng.random((7, 64, 64, 3), dtype=np.float32)
    z = rng.standard_normal((7, model.latent_dim), dtype=np.float32)
    with torch.inference_mode():
      mean_t, logvar_t = module.encode(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))))
      recon_t = module.decode(torch.from_numpy(z)).numpy().transpose(0, 2, 3, 1)
    prepared = fast.prepare_jit(model, variables)
    mean, logvar = encode_jit(model, prepared, jnp.asarray(x))
    recon = decode_jit(model, prepared, jnp.asarray(z))
    assert np.abs(np.asarray(mean) - mean_t.numpy()).max() <= PARITY_TOL
    assert np.abs(np.asarray(logvar) - logvar_t.numpy()).max() <= PARITY_TOL
    assert np.abs(np.asarray(recon) - recon_t).max() <= PARITY_TOL
    assert recon_t.std() > 1e-3


def test_prepare_is_idempotent_and_keeps_the_betavae_floor():
  model = models.build("betavae", latent_dim=8)
  prepared = fast.prepare_jit(model, _random_variables(model, 5))
  assert fast.prepare(model, prepared) is prepared
  z = 3 * jax.random.normal(jax.random.key(0), (16, 8))
  assert float(decode_jit(model, prepared, z).min()) >= 0.5  # BN -> ReLU -> Sigmoid, as the original


def test_configure_xla_flags_keeps_the_users_flags():
  env = {"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=dot,eltwise --xla_dump_to=/tmp/x"}
  added = schedule.configure_xla_flags(env, host_devices=2)
  assert "--xla_cpu_experimental_ynn_fusion_type=dot,eltwise" in env["XLA_FLAGS"].split()
  assert "--xla_dump_to=/tmp/x" in env["XLA_FLAGS"].split()
  assert added == ["--xla_force_host_platform_device_count=2", "--xla_cpu_multi_thread_eigen=false"]
  assert schedule.configure_xla_flags(env, host_devices=2) == []  # Nothing twice.
  off = {"JAXVAE_XLA_FLAGS": "0"}
  assert schedule.configure_xla_flags(off) == [] and "XLA_FLAGS" not in off
  assert schedule.configure_xla_flags({}, host_devices=1) == [schedule.YNN_DOT_ONLY]
  assert chunking.resolve(0, "dfcvae", "gpu") == 0
  assert chunking.resolve(0, "dfcvae", "cpu") == models.get_info("dfcvae").cpu_chunk_size > 0
  assert chunking.resolve(5, "dfcvae", "cpu") == 5
  # Inputs per compiled call of the streaming modes (config.batch_size = 0).
  assert [chunking.batch_size(0, b) for b in ("cpu", "gpu", "tpu")] == [64, 1024, 1024]
  assert chunking.batch_size(12, "gpu") == 12


def test_sampling_on_prepared_params_equals_the_reference_modules():
  """jaxvae.sampling runs the fast path on prepared params and the flax modules on raw variables;
  encode, decode (chunked with padding) and variations agree."""
  from jaxvae import sampling
  model = models.build("dfcvae")
  variables = _random_variables(model, 3)
  prepared = fast.prepare_jit(model, variables)
  z = 2 * jax.random.normal(jax.random.key(3), (7, model.latent_dim))
  x = jax.random.uniform(jax.random.key(4), (7, 64, 64, 3))
  for a, b in zip(sampling.encode(model, prepared, x, 4), sampling.encode(model, variables, x, 4)):
    assert float(jnp.abs(a - b).max()) <= PARITY_TOL
  assert float(jnp.abs(sampling.decode(model, prepared, z, 4)
                       - sampling.decode(model, variables, z, 4)).max()) <= PARITY_TOL
  key = jax.random.key(5)
  assert float(jnp.abs(sampling.variations(model, prepared, x, key, 3)
                       - sampling.variations(model, variables, x, key, 3)).max()) <= PARITY_TOL
