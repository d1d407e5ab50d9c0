"""One training step and one evaluation step, jitted, data-parallel over a 1-D device mesh.

The batch is sharded over the mesh axis `data`; parameters, optimizer state and BatchNorm
statistics are replicated. BatchNorm reduces over the global batch (XLA inserts the
cross-device sums), so any number of devices computes what one device does.
"""

import functools
from typing import Any, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxvae import metrics
from jaxvae.train import losses
from jaxvae.train.state import TrainState

DATA_AXIS = "data"
COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


class StepConfig(NamedTuple):
  model: nn.Module
  loss: losses.Spec
  eps_std: float  # std of the sampling noise
  eps_shared: bool  # one eps row for the whole batch (PVAE)
  compute_dtype: str = "float32"


class Forward(NamedTuple):
  terms: losses.Terms
  batch_stats: Any  # updated running statistics
  recon: jax.Array  # [B, H, W, C] in the model's output range
  mean: jax.Array  # [B, L]
  logvar: jax.Array  # [B, L]


def sample_eps(key: jax.Array, batch: int, latent: int, std: float, shared: bool) -> jax.Array:
  """[B, L] N(0, std^2) noise, or [1, L] when one draw is shared by the batch."""
  return std * jax.random.normal(key, (1 if shared else batch, latent), jnp.float32)


def forward(config: StepConfig, params: Any, batch_stats: Any, x: jax.Array,
            eps: jax.Array) -> tuple[jax.Array, Forward]:
  """Training-mode forward pass and loss; x in the model's input range. Returns (loss, Forward)."""
  model, dtype = config.model, COMPUTE_DTYPES[config.compute_dtype]
  if dtype != jnp.float32:
    params = jax.tree.map(lambda p: p.astype(dtype), params)
    x_in = x.astype(dtype)
  else:
    x_in = x
  variables = {"params": params, "batch_stats": batch_stats}
  out, updated = model.apply(variables, x_in, eps.astype(x_in.dtype), train=True,
                             mutable=["batch_stats"])
  terms = losses.compute(config.loss, x, out.recon, out.mean, out.logvar, model.input_range,
                         model.output_range)
  return terms.loss, Forward(terms, updated.get("batch_stats", batch_stats), out.recon, out.mean,
                             out.logvar)


def gradients(config: StepConfig, params: Any, batch_stats: Any, x: jax.Array,
              eps: jax.Array) -> tuple[Forward, Any]:
  """(Forward, d loss / d params) for one batch and noise."""
  (_, fwd), grads = jax.value_and_grad(functools.partial(forward, config), has_aux=True)(
      params, batch_stats, x, eps)
  return fwd, grads


def apply_gradients(state: TrainState, tx: optax.GradientTransformation, fwd: Forward,
                    grads: Any) -> TrainState:
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  return state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                       batch_stats=fwd.batch_stats, opt_state=opt_state)


def step_with_eps(config: StepConfig, tx: optax.GradientTransformation, state: TrainState,
                  x: jax.Array, eps: jax.Array) -> tuple[TrainState, dict]:
  """One optimizer step with given noise (what the parity tests drive)."""
  fwd, grads = gradients(config, state.params, state.batch_stats, x, eps)
  metrics = {"loss": fwd.terms.loss, "reconstruction": fwd.terms.reconstruction,
             "kl": fwd.terms.kl, "unweighted": fwd.terms.unweighted,
             "grad_norm": optax.global_norm(grads),
             "learning_rate": state.opt_state.hyperparams["learning_rate"]}
  return apply_gradients(state, tx, fwd, grads), metrics


def train_step(config: StepConfig, tx: optax.GradientTransformation, state: TrainState,
               x: jax.Array) -> tuple[TrainState, dict]:
  """One step; the noise comes from fold_in(run key, step), so it is a function of the step."""
  key = jax.random.fold_in(state.key, state.step)
  eps = sample_eps(key, x.shape[0], config.model.latent_dim, config.eps_std, config.eps_shared)
  return step_with_eps(config, tx, state, x, eps)


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  devices = list(jax.devices() if devices is None else devices)
  return Mesh(np.array(devices), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def jit_train_step(config: StepConfig, tx: optax.GradientTransformation, mesh: Mesh):
  """train_step jitted with the state donated, batch sharded, everything else replicated."""
  return jax.jit(functools.partial(train_step, config, tx), donate_argnums=0,
                 in_shardings=(replicated(mesh), batch_sharding(mesh)),
                 out_shardings=(replicated(mesh), replicated(mesh)))


PSNR_CAP = 100.0  # dB, for identical images (PSNR is +inf there)


def eval_batch(config: StepConfig, variables: Any, x: jax.Array, eps: jax.Array,
               valid: jax.Array) -> dict:
  """Inference-mode pass over one batch, reduced to replicated scalars (multi-host safe).

  Sums over the `valid` images ([B] 0/1) of MSE, PSNR (capped at PSNR_CAP) and SSIM of the
  deterministic reconstructions (z = mean) on [0, 1]; and the original's loss terms with sampled
  z, as the originals' test loops and Keras' evaluate compute them.
  """
  model = config.model
  det = model.apply(variables, x)
  sampled = model.apply(variables, x, eps)
  terms = losses.compute(config.loss, x, sampled.recon, sampled.mean, sampled.logvar,
                         model.input_range, model.output_range)
  lo, hi = model.output_range
  ilo, ihi = model.input_range
  recon01 = jnp.clip((det.recon - lo) / (hi - lo), 0.0, 1.0).astype(jnp.float32)
  x01 = ((x - ilo) / (ihi - ilo)).astype(jnp.float32)
  scores = metrics.reconstruction_metrics(x01, recon01, net=None)
  scores["psnr"] = jnp.minimum(scores["psnr"], PSNR_CAP)
  return {**{k: jnp.sum(v * valid) for k, v in scores.items()}, **terms._asdict()}


def jit_eval_batch(config: StepConfig, mesh: Mesh):
  return jax.jit(functools.partial(eval_batch, config),
                 in_shardings=(replicated(mesh), batch_sharding(mesh), replicated(mesh),
                               batch_sharding(mesh)),
                 out_shardings=replicated(mesh))


def put_batch(mesh: Mesh, local: np.ndarray) -> jax.Array:
  """This process's share of the global batch -> one global array sharded over `data`."""
  return jax.make_array_from_process_local_data(batch_sharding(mesh), local)


def put_replicated(mesh: Mesh, tree: Any) -> Any:
  return jax.device_put(tree, replicated(mesh))
