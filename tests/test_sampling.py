"""The generation engine: vmap vs loop, jit vs no jit, seeds, modes of sampling, sharding."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import REPO
from jaxvae import models, sampling


@pytest.fixture(scope="module")
def small():
  """A Beta-VAE with random weights (latent 8) and 3 random images."""
  model = models.build("betavae", latent_dim=8)
  variables = models.init_variables(model, jax.random.key(1))
  images = jax.random.uniform(jax.random.key(2), (3, 64, 64, 3))
  return model, variables, images


@pytest.mark.parametrize("options", [sampling.Options(chunk_size=4),  # encode once
                                     sampling.Options(input_noise_std=0.1)])  # encode per variation
def test_vmap_equals_python_loop_over_variations(small, options):
  model, variables, images = small
  key = jax.random.key(7)
  out = sampling.variations(model, variables, images, key, 4, options)
  index = jnp.arange(images.shape[0])
  for k in range(4):
    z = sampling.variation_latent(model, variables, images, jax.random.fold_in(key, k), index,
                                  options)
    np.testing.assert_allclose(out[:, k], sampling.decode(model, variables, z, options.chunk_size),
                               atol=1e-6)


def test_jit_equals_disable_jit(small):
  model, variables, images = small
  key = jax.random.key(3)
  jitted = sampling.variations(model, variables, images, key, 3)
  with jax.disable_jit():
    eager = sampling.variations(model, variables, images, key, 3)
  np.testing.assert_allclose(jitted, eager, atol=1e-6)


def test_same_key_identical_different_key_different(small):
  model, variables, images = small
  a = sampling.variations(model, variables, images, jax.random.key(0), 4)
  b = sampling.variations(model, variables, images, jax.random.key(0), 4)
  c = sampling.variations(model, variables, images, jax.random.key(1), 4)
  np.testing.assert_array_equal(a, b)
  assert np.abs(np.asarray(a) - np.asarray(c)).max() > 1e-3
  assert np.abs(np.asarray(a[:, 0]) - np.asarray(a[:, 1])).max() > 1e-3


def test_image_variations_do_not_depend_on_the_batch(small):
  model, variables, images = small
  alone = sampling.variations(model, variables, images[:1], jax.random.key(5), 3)
  batched = sampling.variations(model, variables, images, jax.random.key(5), 3)
  np.testing.assert_allclose(alone[0], batched[0], atol=1e-6)


def test_deterministic_and_temperature_zero_equal_decode_of_mean(small):
  model, variables, images = small
  mean, _ = model.apply(variables, images, method=model.encode)
  expected = model.apply(variables, mean, method=model.decode)
  zero = sampling.variations(model, variables, images, jax.random.key(0), 2,
                             sampling.Options(temperature=0.0))
  for k in range(2):
    np.testing.assert_allclose(zero[:, k], expected, atol=1e-6)
  np.testing.assert_allclose(sampling.reconstruct(model, variables, images), expected, atol=1e-6)


def test_temperature_scales_the_posterior_spread(small):
  model, variables, images = small
  index, key = jnp.arange(3), jax.random.key(4)
  mean, _ = model.apply(variables, images, method=model.encode)
  z1 = sampling.variation_latent(model, variables, images, key, index, sampling.Options())
  z2 = sampling.variation_latent(model, variables, images, key, index,
                                 sampling.Options(temperature=2.0))
  np.testing.assert_allclose(z2 - mean, 2 * (z1 - mean), rtol=1e-4, atol=1e-6)


def test_pvae_shared_rule_uses_one_eps_of_std_point1(small):
  model, variables, images = small
  images = jnp.stack([images[0]] * 3)  # Same image -> same posterior -> same z iff eps shared.
  index = jnp.arange(3)
  z = sampling.variation_latent(model, variables, images, jax.random.key(9), index,
                                sampling.Options(rule="pvae_shared"))
  np.testing.assert_allclose(z[0], z[1], atol=1e-7)
  mean, logvar = model.apply(variables, images, method=model.encode)
  eps = (z - mean) / jnp.exp(0.5 * logvar)
  per = sampling.variation_latent(model, variables, images, jax.random.key(9), index,
                                  sampling.Options())
  assert np.abs(np.asarray(per[0] - per[1])).max() > 1e-3
  many = jax.vmap(lambda k: sampling.variation_latent(
      model, variables, images[:1], jax.random.fold_in(jax.random.key(0), k), index[:1],
      sampling.Options(rule="pvae_shared")))(jnp.arange(400))
  eps = (many[:, 0] - mean[0]) / jnp.exp(0.5 * logvar[0])
  assert 0.09 < float(eps.std()) < 0.11 and float(np.abs(eps[0] - eps[0]).max()) == 0


def test_options_validation():
  with pytest.raises(ValueError, match="temperature"):
    sampling.Options(temperature=-1)
  with pytest.raises(ValueError, match="input_noise_std"):
    sampling.Options(input_noise_std=-0.1)
  with pytest.raises(ValueError, match="sampling rule"):
    sampling.Options(rule="nope")


def test_num_zero_is_refused(small):
  model, variables, images = small
  with pytest.raises(ValueError, match="num_variations must be >= 1"):
    sampling.variations(model, variables, images, jax.random.key(0), 0)


@pytest.mark.parametrize("chunk", [1, 2, 5, 0])
def test_chunked_decode_equals_whole(small, chunk):
  model, variables, _ = small
  z = jax.random.normal(jax.random.key(0), (7, 8))
  whole = model.apply(variables, z, method=model.decode)
  np.testing.assert_allclose(sampling.decode(model, variables, z, chunk), whole, atol=1e-6)


def test_slerp_and_interpolation_endpoints(small):
  model, variables, images = small
  z0, z1 = jax.random.normal(jax.random.key(0), (2, 8))
  np.testing.assert_allclose(sampling.slerp(z0, z1, 0.0), z0, atol=1e-5)
  np.testing.assert_allclose(sampling.slerp(z0, z1, 1.0), z1, atol=1e-5)
  z1 = z1 * jnp.linalg.norm(z0) / jnp.linalg.norm(z1)
  mid = sampling.slerp(z0, z1, 0.5)  # Equal norms: the midpoint is at equal angles, same norm.
  np.testing.assert_allclose(jnp.linalg.norm(mid), jnp.linalg.norm(z0), rtol=1e-5)
  cos = lambda a, b: float(a @ b / jnp.linalg.norm(a) / jnp.linalg.norm(b))
  assert abs(cos(mid, z0) - cos(mid, z1)) < 1e-5
  np.testing.assert_allclose(sampling.slerp(z0, z0, 0.3), z0, atol=1e-5)
  for method in sampling.INTERPOLATIONS:
    path = sampling.interpolate(model, variables, images[:2], images[1:], 5, method)
    recon = sampling.reconstruct(model, variables, images)
    assert path.shape == (2, 5, 64, 64, 3)
    np.testing.assert_allclose(path[:, 0], recon[:2], atol=1e-5)
    np.testing.assert_allclose(path[:, -1], recon[1:], atol=1e-5)


def test_edit_is_mean_difference_and_strength_zero_is_reconstruction(small):
  model, variables, images = small
  mu, _ = model.apply(variables, images, method=model.encode)
  direction = sampling.attribute_direction(model, variables, images[:2], images[2:])
  np.testing.assert_allclose(direction, mu[:2].mean(0) - mu[2], atol=1e-5)
  edited = sampling.edit(model, variables, images, direction, jnp.array([0.0, 1.0]))
  np.testing.assert_allclose(edited[:, 0], sampling.reconstruct(model, variables, images),
                             atol=1e-6)
  np.testing.assert_allclose(
      edited[:, 1], model.apply(variables, mu + direction, method=model.decode), atol=1e-6)


def test_prior_samples(small):
  model, variables, _ = small
  a = sampling.sample(model, variables, jax.random.key(0), 5)
  z = jax.random.normal(jax.random.key(0), (5, 8))
  np.testing.assert_allclose(a, model.apply(variables, z, method=model.decode), atol=1e-6)


def test_real_variations_differ_but_stay_close(betavae_l200, portraits):
  """Posterior sampling really uses logvar: variations differ, each within 1.25x the recon MSE."""
  m, v = betavae_l200.model, betavae_l200.variables
  recon = np.asarray(sampling.reconstruct(m, v, portraits))
  var = np.asarray(sampling.variations(m, v, portraits, jax.random.key(0), 10))
  recon_mse = ((recon - portraits) ** 2).mean(axis=(1, 2, 3))
  var_mse = ((var - portraits[:, None]) ** 2).mean(axis=(2, 3, 4))
  assert (var_mse <= 1.25 * recon_mse[:, None]).all(), (var_mse, recon_mse)
  pair_rms = np.sqrt(((var[:, :, None] - var[:, None]) ** 2).mean(axis=(3, 4, 5)))
  off_diagonal = pair_rms[:, ~np.eye(10, dtype=bool)]
  assert off_diagonal.min() > 2e-3  # Every pair of variations differs visibly (> 0.5/255 RMS).
  # With logvar ignored (temperature 0) the variations would collapse to the reconstruction.
  zero = np.asarray(sampling.variations(m, v, portraits, jax.random.key(0), 2,
                                        sampling.Options(temperature=0.0)))
  assert np.abs(zero[:, 0] - zero[:, 1]).max() == 0


_SHARDED = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    from jaxvae import models, sampling
    model = models.build("betavae", latent_dim=8)
    variables = models.init_variables(model, jax.random.key(1))
    images = jax.random.uniform(jax.random.key(2), (6, 64, 64, 3))
    options = sampling.Options(input_noise_std=float(sys.argv[1]))
    run = lambda v: np.asarray(sampling.variations(model, v, images, jax.random.key(3), 3, options))
    out = run(variables)
    # The weights replicated over the devices are reused only for the very same arrays:
    assert np.array_equal(run(variables), out)
    assert not np.allclose(run(jax.tree.map(lambda a: a * 1.5, variables)), out)
    assert np.array_equal(run(variables), out)
    host = jax.tree.map(np.array, variables)  # numpy leaves, changed in place below
    assert np.allclose(run(host), out, atol=1e-6)
    max(jax.tree.leaves(host), key=np.size)[...] *= 1.5  # a kernel
    assert not np.allclose(run(host), out)
    np.save(sys.argv[2], out)
    print(json.dumps({"devices": jax.local_device_count()}))
""")


@pytest.mark.parametrize("noise", [0.0, 0.05])
def test_sharded_equals_unsharded(tmp_path, noise):
  results = {}
  for n in (1, 4):
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={n}",
           "JAX_PLATFORMS": "cpu"}
    out = tmp_path / f"{n}.npy"
    proc = subprocess.run([sys.executable, "-c", _SHARDED, str(noise), str(out)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["devices"] == n
    results[n] = np.load(out)
  assert results[1].shape == (6, 3, 64, 64, 3)
  np.testing.assert_allclose(results[4], results[1], atol=1e-6)


_MULTIHOST = textwrap.dedent("""
    import sys
    import jax, numpy as np
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    port, pid, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=pid)
    from jaxvae import models, sampling
    model = models.build("betavae", latent_dim=8)
    variables = models.init_variables(model, jax.random.key(1))
    images = jax.random.uniform(jax.random.key(2), (6, 64, 64, 3))[3 * pid:3 * pid + 3]
    got = sampling.variations(model, variables, images, jax.random.key(3), 3,
                              devices=jax.devices())
    assert len(jax.devices()) == 4 and len(jax.local_devices()) == 2
    np.save(out, np.asarray(got))
""")


def test_two_processes_equal_one(tmp_path):
  """jax.distributed with 2 processes x 2 host devices: each gets its share, as one process would."""
  import socket
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
         "JAX_PLATFORMS": "cpu"}
  procs = [subprocess.Popen([sys.executable, "-c", _MULTIHOST, str(port), str(p),
                             str(tmp_path / f"{p}.npy")], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for p in (0, 1)]
  for p in procs:
    _, err = p.communicate(timeout=240)
    assert p.returncode == 0, err[-3000:]
  model = models.build("betavae", latent_dim=8)
  variables = models.init_variables(model, jax.random.key(1))
  images = jax.random.uniform(jax.random.key(2), (6, 64, 64, 3))
  whole = sampling.variations(model, variables, images, jax.random.key(3), 3)
  np.testing.assert_allclose(np.load(tmp_path / "0.npy"), whole[:3], atol=1e-6)
  np.testing.assert_allclose(np.load(tmp_path / "1.npy"), whole[3:], atol=1e-6)


def _image_keys(n: int, seed: int = 11):
  return jax.vmap(lambda i: jax.random.fold_in(jax.random.key(seed), i))(jnp.arange(n))


def test_per_image_keys_give_the_same_images_in_any_batch_or_order(small):
  model, variables, images = small
  keys = _image_keys(3)
  whole = np.asarray(sampling.variations(model, variables, images, None, 4, keys=keys))
  order = np.array([2, 0])
  part = np.asarray(sampling.variations(model, variables, images[order], None, 4,
                                        keys=keys[order]))
  np.testing.assert_allclose(part, whole[order], atol=1e-6)
  alone = np.asarray(sampling.variations(model, variables, images[1:2], jax.random.key(99), 4,
                                         keys=keys[1:2]))  # `key` is ignored
  np.testing.assert_allclose(alone[0], whole[1], atol=1e-6)
  other = np.asarray(sampling.variations(model, variables, images, None, 4,
                                         keys=_image_keys(3, seed=12)))
  assert np.abs(other - whole).max() > 1e-3 and np.abs(whole[:, 0] - whole[:, 1]).max() > 1e-3


@pytest.mark.parametrize("options", [sampling.Options(temperature=0.7, input_noise_std=0.1),
                                     sampling.Options(rule="pvae_shared")])
def test_per_image_keys_follow_the_documented_derivation(small, options):
  """r = fold_in(keys[b], k); noise from split(r)[0], eps from split(r)[1] (x 0.1 under
  pvae_shared); z = mean + temperature exp(logvar / 2) eps, one image at a time."""
  model, variables, images = small
  keys = _image_keys(3)
  got = sampling.keyed_variations(model, variables, images, keys, 2, options, latents=True)
  scale = sampling.PVAE_EPS_STD if options.rule == "pvae_shared" else 1.0
  for b in range(3):
    for k in range(2):
      noise_key, eps_key = jax.random.split(jax.random.fold_in(keys[b], k))
      x = images[b:b + 1]
      if options.input_noise_std:
        x = jnp.clip(x + options.input_noise_std * jax.random.normal(noise_key, x.shape[1:]), 0, 1)
      mean, logvar = model.apply(variables, x, method=model.encode)
      eps = scale * jax.random.normal(eps_key, mean.shape[1:])
      z = mean + options.temperature * jnp.exp(0.5 * logvar) * eps
      np.testing.assert_allclose(got.z[b, k], z[0], atol=1e-6)
      np.testing.assert_allclose(got.mean[b, k], mean[0], atol=1e-6)
      decoded = model.apply(variables, z, method=model.decode)
      np.testing.assert_allclose(got.images[b, k], decoded[0], atol=1e-6)


def test_keyed_uint8_is_rounded_on_the_devices_and_keys_are_checked(small):
  model, variables, images = small
  keys = _image_keys(3)
  floats = sampling.keyed_variations(model, variables, images, keys, 2)
  as_uint8 = sampling.keyed_variations(model, variables, images, keys, 2, as_uint8=True)
  assert as_uint8.images.dtype == jnp.uint8 and as_uint8.z is None
  expected = np.round(np.clip(np.asarray(floats.images), 0, 1) * 255).astype(np.uint8)
  np.testing.assert_array_equal(as_uint8.images, expected)
  with pytest.raises(ValueError, match="typed keys"):
    sampling.variations(model, variables, images, None, 2, keys=jax.random.key_data(keys))
  with pytest.raises(ValueError, match=r"shape \(3,\)"):
    sampling.variations(model, variables, images, None, 2, keys=keys[:2])


def test_keyed_uint8_inputs_are_read_as_the_loaders_float32_division(small):
  """uint8 pixels k enter the engines as numpy's float32 k / 255 (what the loaders give), so
  the outputs are bit-identical to those of the float inputs; input noise reads them too."""
  model, variables, _ = small
  pixels = np.random.default_rng(3).integers(0, 256, (3, 64, 64, 3), np.uint8)
  pixels[0, 0, :4, 0] = [0, 1, 254, 255]
  unit = np.asarray(pixels, np.float32) / 255.0
  keys = _image_keys(3)
  for options in (sampling.Options(), sampling.Options(input_noise_std=0.05)):
    want = sampling.keyed_variations(model, variables, unit, keys, 2, options, latents=True)
    got = sampling.keyed_variations(model, variables, pixels, keys, 2, options, latents=True)
    for field in ("images", "mean", "logvar", "z"):
      np.testing.assert_array_equal(getattr(got, field), getattr(want, field), err_msg=field)
    np.testing.assert_array_equal(  # The batch-keyed engine reads them alike.
        sampling.variations(model, variables, pixels, jax.random.key(4), 2, options),
        sampling.variations(model, variables, unit, jax.random.key(4), 2, options))


_KEYED_SHARDED = textwrap.dedent("""
    import sys
    import jax, numpy as np
    from jaxvae import models, sampling
    model = models.build("betavae", latent_dim=8)
    variables = models.init_variables(model, jax.random.key(1))
    images = jax.random.uniform(jax.random.key(2), (6, 64, 64, 3))
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(11), i))(jax.numpy.arange(6))
    out = sampling.keyed_variations(model, variables, images, keys, 3,
                                    sampling.Options(input_noise_std=0.05), latents=True)
    assert jax.local_device_count() == 4
    np.savez(sys.argv[1], images=out.images, z=out.z, mean=out.mean)
""")


def test_keyed_sharded_equals_unsharded(tmp_path):
  """Per-image keys over 4 host devices (6 images: 2 of padding) = 1 device (this process)."""
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
         "JAX_PLATFORMS": "cpu"}
  proc = subprocess.run([sys.executable, "-c", _KEYED_SHARDED, str(tmp_path / "4.npz")],
                        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  sharded = np.load(tmp_path / "4.npz")
  model = models.build("betavae", latent_dim=8)
  variables = models.init_variables(model, jax.random.key(1))
  images = jax.random.uniform(jax.random.key(2), (6, 64, 64, 3))
  one = sampling.keyed_variations(model, variables, images, _image_keys(6), 3,
                                  sampling.Options(input_noise_std=0.05), jax.devices()[:1],
                                  latents=True)
  assert sharded["images"].shape == (6, 3, 64, 64, 3)
  for name in ("images", "z", "mean"):
    np.testing.assert_allclose(sharded[name], getattr(one, name), atol=1e-6)
