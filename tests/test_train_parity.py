"""Training parity with the originals: losses, gradients, BatchNorm statistics, optimizer steps.

References (port/train_ref): the Vanilla VAE, Beta-VAE and DFC-VAE in torch (train mode, the
originals' losses, torch.optim.Adam); the PVAE notebook's step in Keras 3 (JAX backend, Keras'
layers, losses and Adam). Same weights, batch and epsilon on both sides.

Tolerances: loss 1e-5 relative; each gradient tensor 1e-4 of its norm; BatchNorm statistics,
parameters and decoded outputs ([0, 1] scale) 1e-5 absolute.

Two known effects are handled explicitly, not by loosening anything:
- A conv bias followed by a training-mode BatchNorm has a true gradient of zero (the batch mean
  absorbs it), so both frameworks return rounding noise there. Those biases are checked to have
  noise-sized gradients in both, and no effect on the training-mode outputs when moved.
- Adam normalises each entry's gradient (m / sqrt(v)), so wherever a gradient is at rounding level
  (those biases, but also e.g. entries of the DFC-VAE's fc_var and the Vanilla VAE's
  decoder_input), float32 noise becomes steps of up to the learning rate, different in each
  framework. Multi-step comparisons therefore run both sides in float64, where the noise (1e-16)
  sits far below Adam's eps (1e-8); then every parameter, bias included, must agree within 1e-5.
  The optimizers themselves are compared in float32 on identical gradients.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from conftest import shared_file
from random_weights import randomize_torch
from jaxvae import checkpoint, models
from jaxvae.models import layers
from jaxvae.train import losses, optim, recipes, state as state_lib, step
from port import sources
from port.train_ref import keras_train, torch_train

LOSS_TOL = 1e-5
GRAD_TOL = 1e-4
STATE_TOL = 1e-5
LATENT = {"vanilla": 200, "betavae": 32, "dfcvae": 100, "pvae": 100}
# Conv biases followed by a training-mode BatchNorm (true gradient zero).
BN_BIASES = {
    "vanilla": (),
    "betavae": tuple(f"{p}_{i}/conv/bias" for p in ("encoder", "decoder") for i in range(4)),
    "dfcvae": tuple(f"{p}{i}/conv/bias" for p in ("e", "d") for i in range(1, 5)),
    "pvae": tuple(f"{p}_{i}/conv/bias" for p in ("encoder", "decoder") for i in range(4)
                  if (p, i) != ("decoder", 3)),
}
BATCH = 4


def _pvae_variables(seed: int) -> dict:
  """Random PVAE weights and statistics (He-scaled kernels, random BatchNorm); the last conv is
  scaled so that pixels span about 0-255. Drawn in numpy from the abstract tree (no init)."""
  rng = np.random.default_rng(seed)
  abstract = models.abstract_variables(models.build("pvae"))

  def leaf(path, a):
    name = "/".join(str(getattr(k, "key", k)) for k in path)
    if name.endswith("kernel"):
      v = rng.standard_normal(a.shape) * np.sqrt(2.0 / np.prod(a.shape[:-1]))
      return (40.0 * v if "decoder_out" in name else v).astype(np.float32)
    if name.startswith("batch_stats") and name.endswith("var") or name.endswith("scale"):
      return (0.5 + rng.random(a.shape)).astype(np.float32)
    return (0.1 * rng.standard_normal(a.shape) + (127.5 if "decoder_out" in name else 0.0)
            ).astype(np.float32)
  return jax.tree_util.tree_map_with_path(leaf, abstract)


def _setup(name: str, dtype, state_dict: dict | None = None, seed: int = 0):
  """(reference trainer, flax model, variables as numpy in `dtype`)."""
  if name == "pvae":
    variables = _pvae_variables(seed)
    ref = keras_train.Trainer(variables, dtype=np.dtype(dtype).name)
    return ref, models.build("pvae"), jax.tree.map(lambda a: np.asarray(a, dtype), variables)
  torch.manual_seed(seed)  # The constructor draws the kernels.
  module = torch_train.CLASSES[name](LATENT[name] if state_dict is None else
                                     state_dict["fc_mu.weight"].shape[0])
  if state_dict is None:
    module = randomize_torch(module, seed)
  else:
    module.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state_dict.items()})
  ref = torch_train.Trainer(name, module, dtype=torch.float64 if dtype == np.float64 else
                            torch.float32)
  model = models.build(name, latent_dim=module.fc_mu.weight.shape[0])
  return ref, model, ref.variables()


def _config(name: str, model) -> tuple[step.StepConfig, object]:
  r = recipes.get(name)
  return (step.StepConfig(model, losses.Spec(r.loss, r.beta, r.alpha), r.eps_std, r.eps_shared),
          optim.make(r.optimizer, r.learning_rate))


def _batch(name: str, model, rng, dtype):
  """(x in the model's input range, eps, what the reference is fed)."""
  x01 = (np.round(rng.random((BATCH, 64, 64, 3)) * 255) / 255).astype(dtype)
  x = np.asarray(models.to_model_range(x01, model.input_range), dtype)
  r = recipes.get(name)
  eps = (r.eps_std * rng.standard_normal((1 if r.eps_shared else BATCH, model.latent_dim))
         ).astype(dtype)
  return x, eps, (x01 * 255 if name == "pvae" else x)


def _ref_step(ref, name: str, fed, eps):
  """(loss, gradients as a flax tree) of one reference step."""
  if name == "pvae":
    result = ref.step(fed, eps)
    return result.loss, result.grads
  loss, grads, _ = ref.step(fed, eps)
  return loss, ref.flax_grads(grads)


def _check_gradients(name: str, grads, ref_grads) -> None:
  g, r = checkpoint.flatten(grads["params"]), checkpoint.flatten(ref_grads["params"])
  assert set(g) == set(r)
  largest = max(np.linalg.norm(v) for v in r.values())
  for key in g:
    ours, theirs = np.asarray(g[key], np.float64), np.asarray(r[key], np.float64)
    if key in BN_BIASES[name]:
      # Rounding noise on both sides (measured ~1e-7 of the largest gradient norm).
      assert np.linalg.norm(ours) <= 1e-5 * largest, key
      assert np.linalg.norm(theirs) <= 1e-5 * largest, key
      continue
    assert np.linalg.norm(ours - theirs) <= GRAD_TOL * np.linalg.norm(theirs), key


def _check_bn_biases_have_no_effect(name, config, variables, x, eps) -> None:
  """Moving every BN-preceded conv bias changes no training-mode output."""
  if not BN_BIASES[name]:
    return
  forward = jax.jit(lambda p: step.forward(config, p, variables["batch_stats"], x, eps)[1])
  base = forward(variables["params"])
  rng = np.random.default_rng(7)
  flat = checkpoint.flatten(variables["params"])
  moved = {k: (v + rng.uniform(-1, 1, v.shape).astype(v.dtype) if k in BN_BIASES[name] else v)
           for k, v in flat.items()}
  params = jax.tree.unflatten(jax.tree.structure(variables["params"]),
                              [moved[k] for k in flat])
  shifted = forward(params)
  scale = config.model.output_range[1] - config.model.output_range[0]
  assert np.abs(np.asarray(shifted.recon) - np.asarray(base.recon)).max() <= STATE_TOL * scale
  assert np.abs(np.asarray(shifted.mean) - np.asarray(base.mean)).max() <= STATE_TOL
  assert np.abs(np.asarray(shifted.logvar) - np.asarray(base.logvar)).max() <= STATE_TOL


def _check_close(ours, theirs, tol: float, what: str) -> None:
  a, b = checkpoint.flatten(ours), checkpoint.flatten(theirs)
  assert set(a) == set(b), what
  worst = max((float(np.abs(np.asarray(a[k], np.float64) - b[k]).max()), k) for k in a)
  assert worst[0] <= tol, f"{what}: {worst}"


def _one_step_float32(name: str, state_dict=None) -> None:
  ref, model, variables = _setup(name, np.float32, state_dict)
  config, _ = _config(name, model)
  x, eps, fed = _batch(name, model, np.random.default_rng(1), np.float32)
  fwd, grads = jax.jit(lambda p, s, x, e: step.gradients(config, p, s, x, e))(
      variables["params"], variables.get("batch_stats", {}), x, eps)
  ref_loss, ref_grads = _ref_step(ref, name, fed, eps)
  assert abs(float(fwd.terms.loss) - ref_loss) <= LOSS_TOL * abs(ref_loss)
  _check_gradients(name, {"params": grads}, ref_grads)
  if "batch_stats" in variables:  # The reference's running statistics after its step.
    _check_close(fwd.batch_stats, ref.variables()["batch_stats"], STATE_TOL, "batch_stats")
    _check_bn_biases_have_no_effect(name, config, variables, x, eps)


@pytest.mark.parametrize("name", ["vanilla", "betavae", "dfcvae", "pvae"])
def test_loss_gradients_and_statistics_match_original(name):
  _one_step_float32(name)


def _steps_float64(name: str, state_dict=None, steps: int = 5) -> None:
  with jax.enable_x64(True):
    ref, model, variables = _setup(name, np.float64, state_dict)
    config, tx = _config(name, model)
    state = state_lib.create(jax.tree.map(jnp.asarray, variables), tx, 0)
    train = jax.jit(lambda s, x, e: step.step_with_eps(config, tx, s, x, e))
    decode = jax.jit(lambda v, z: model.apply(v, z, method=model.decode))
    rng = np.random.default_rng(2)
    z = rng.standard_normal((4, model.latent_dim))
    scale = model.output_range[1] - model.output_range[0]
    for k in range(1, steps + 1):
      x, eps, fed = _batch(name, model, rng, np.float64)
      ref_loss, _ = _ref_step(ref, name, fed, eps)
      state, metrics = train(state, x, eps)
      assert abs(float(metrics["loss"]) - ref_loss) <= LOSS_TOL * abs(ref_loss)
      if k in (1, steps):
        _check_close(state.variables if "batch_stats" in variables else
                     {"params": state.params}, ref.variables(), STATE_TOL, f"step {k}")
        ours = decode(state.variables, z)
        assert np.abs(np.asarray(ours) - ref.decode(z)).max() <= STATE_TOL * scale


@pytest.mark.parametrize("name", ["vanilla", "betavae", "dfcvae", "pvae"])
def test_five_training_steps_match_original_in_float64(name):
  _steps_float64(name)


def test_real_betavae_weights_train_like_the_original():
  state_dict = sources.load_state_dict(shared_file("l200-100.pt"))
  _one_step_float32("betavae", state_dict)
  _steps_float64("betavae", state_dict, steps=3)


def _gradient_sequence(rng, shapes, steps):
  """Gradients spanning many magnitudes, exact zeros and sign changes included."""
  out = []
  for _ in range(steps):
    g = {}
    for k, shape in shapes.items():
      v = rng.standard_normal(shape) * 10.0 ** rng.integers(-9, 3, shape)
      v[rng.random(shape) < 0.1] = 0.0
      g[k] = v.astype(np.float32)
    out.append(g)
  return out


def test_adam_steps_match_torch_and_keras():
  """Same float32 gradients -> same parameters (1e-6; parameters are O(1), so a few ulps), with
  a learning-rate change after step 3."""
  rng = np.random.default_rng(0)
  shapes = {"a": (64, 32), "b": (32,)}
  params0 = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
  grads = _gradient_sequence(rng, shapes, 5)
  # torch.optim.Adam
  tp = {k: torch.nn.Parameter(torch.from_numpy(v.copy())) for k, v in params0.items()}
  topt = torch.optim.Adam(list(tp.values()), lr=1e-3)
  # keras.optimizers.Adam
  keras = keras_train.keras_ref.keras_module()
  kvars = [keras.Variable(v.copy()) for v in params0.values()]
  kopt = keras.optimizers.Adam(1.5e-3)
  kopt.build(kvars)
  ours = {kind: (optim.make(kind, lr), dict(params0)) for kind, lr in
          (("torch_adam", 1e-3), ("keras_adam", 1.5e-3))}
  states = {kind: tx.init(p) for kind, (tx, p) in ours.items()}
  for k, g in enumerate(grads, 1):
    if k == 4:  # As ReduceLROnPlateau does between epochs.
      for group in topt.param_groups:
        group["lr"] = 2e-4
      kopt.learning_rate = 3e-4
      states = {"torch_adam": optim.with_learning_rate(states["torch_adam"], 2e-4),
                "keras_adam": optim.with_learning_rate(states["keras_adam"], 3e-4)}
    for (key, p) in tp.items():
      p.grad = torch.from_numpy(g[key])
    topt.step()
    kopt.apply_gradients(zip([jnp.asarray(g[key]) for key in shapes], kvars))
    for kind, (tx, p) in ours.items():
      updates, states[kind] = tx.update(g, states[kind], p)
      ours[kind] = (tx, optax.apply_updates(p, updates))
    if k in (1, 5):
      for key in shapes:
        t = tp[key].detach().numpy()
        assert np.abs(np.asarray(ours["torch_adam"][1][key]) - t).max() <= 1e-6, (k, key)
        kv = np.asarray(kvars[list(shapes).index(key)].value)
        assert np.abs(np.asarray(ours["keras_adam"][1][key]) - kv).max() <= 1e-6, (k, key)


def test_plateau_matches_keras_reduce_lr_on_plateau():
  keras = keras_train.keras_ref.keras_module()
  callback = keras.callbacks.ReduceLROnPlateau(monitor="val_loss_wo_weight", factor=0.2,
                                               patience=2, mode="min")
  holder = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
  holder.compile(optimizer=keras.optimizers.Adam(1.5e-3))
  callback.set_model(holder)
  callback.on_train_begin()
  ours = optim.Plateau(factor=0.2, patience=2, min_delta=1e-4)
  lr = 1.5e-3
  values = [10.0, 9.0, 9.00005, 9.2, 8.0, 8.0, 8.0, 8.0, 7.9999, 7.0, 7.5, 7.5, 7.5, 7.5, 7.5]
  for epoch, value in enumerate(values):
    callback.on_epoch_end(epoch, {"val_loss_wo_weight": value})
    lr = ours.update(value, lr)
    assert np.float32(lr) == np.float32(holder.optimizer.learning_rate.numpy()), epoch
  assert lr < 1.5e-3 * 0.2 ** 2  # it did reduce, several times


def test_batchnorm_training_semantics():
  """Training-mode output and running statistics as torch BatchNorm2d and Keras' layer."""
  rng = np.random.default_rng(3)
  x = rng.standard_normal((4, 5, 5, 6)).astype(np.float32) * 3 + 1
  init = {"params": {"scale": rng.random(6).astype(np.float32) + 0.5,
                     "bias": rng.standard_normal(6).astype(np.float32)},
          "batch_stats": {"mean": rng.standard_normal(6).astype(np.float32),
                          "var": rng.random(6).astype(np.float32) + 0.5}}
  bn = torch.nn.BatchNorm2d(6)
  with torch.no_grad():
    bn.weight.copy_(torch.from_numpy(init["params"]["scale"]))
    bn.bias.copy_(torch.from_numpy(init["params"]["bias"]))
    bn.running_mean.copy_(torch.from_numpy(init["batch_stats"]["mean"]))
    bn.running_var.copy_(torch.from_numpy(init["batch_stats"]["var"]))
  y_t = bn.train()(torch.from_numpy(x.transpose(0, 3, 1, 2))).detach().numpy().transpose(0, 2, 3, 1)
  ours = layers.batch_norm(True, layers.TORCH_BN_EPS, layers.TORCH_BN_MOMENTUM, "bn",
                           unbiased_update=True)
  y, upd = ours.apply(init, x, mutable=["batch_stats"])
  assert np.abs(np.asarray(y) - y_t).max() <= STATE_TOL
  assert np.abs(np.asarray(upd["batch_stats"]["var"]) - bn.running_var.numpy()).max() <= 1e-6
  assert np.abs(np.asarray(upd["batch_stats"]["mean"]) - bn.running_mean.numpy()).max() <= 1e-6
  keras = keras_train.keras_ref.keras_module()
  kbn = keras.layers.BatchNormalization()
  kbn.build(x.shape)
  kbn.set_weights([init["params"]["scale"], init["params"]["bias"], init["batch_stats"]["mean"],
                   init["batch_stats"]["var"]])
  y_k = np.asarray(kbn(x, training=True))
  ours = layers.batch_norm(True, layers.KERAS_BN_EPS, layers.KERAS_BN_MOMENTUM, "bn")
  y, upd = ours.apply(init, x, mutable=["batch_stats"])
  assert np.abs(np.asarray(y) - y_k).max() <= STATE_TOL
  assert np.abs(np.asarray(upd["batch_stats"]["var"]) - kbn.moving_variance.numpy()).max() <= 1e-6
  assert np.abs(np.asarray(upd["batch_stats"]["mean"]) - kbn.moving_mean.numpy()).max() <= 1e-6


def test_bce_value_and_gradient_match_torch_where_saturated():
  y = np.array([1e-30, 0.25, 0.5, 0.75, 1 - 1e-7, 1.0], np.float32)
  x = np.array([0.0, 0.3, 0.5, 1.0, 0.2, 0.9], np.float32)
  yt = torch.from_numpy(y.copy()).requires_grad_()
  loss_t = torch.nn.functional.binary_cross_entropy(yt, torch.from_numpy(x), reduction="sum")
  loss_t.backward()
  loss, grad = jax.value_and_grad(lambda y: jnp.sum(losses.torch_bce(y, x)))(jnp.asarray(y))
  np.testing.assert_allclose(float(loss), loss_t.item(), rtol=1e-6)
  np.testing.assert_allclose(np.asarray(grad), yt.grad.numpy(), rtol=1e-5)
