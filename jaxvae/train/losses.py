"""The originals' training losses, written as their own code computes them.

Notation: x is the batch in the model's input range, y = recon in its output range, B the batch
size, KL_b = -1/2 sum_j (1 + logvar_bj - mean_bj^2 - exp(logvar_bj)) the KL divergence of image b.

- `bce_sum` (matthew-liu/beta-vae `BetaVAE.loss`, also the DFC-VAE's):
    loss = (sum_{b,i} BCE(y_bi, x_bi) + beta * sum_b KL_b) / B,
    BCE(y, x) = -(x max(log y, -100) + (1 - x) max(log(1 - y), -100)), torch's clamp and gradient.
- `mse_sum` (Alafandi's notebook `loss_function`):
    loss = sum_{b,i} (y_bi - x_bi)^2 + beta sum_b KL_b.
- `pvae` (the Kaggle notebook's `PVAE.compute_loss`, pixels on the 0-255 scale):
    loss = alpha mean_{b,i} (255 x01_bi - y_bi)^2 + beta mean_b KL_b;
    the notebook's `loss_wo_weight` (its ReduceLROnPlateau monitor) is that with alpha = beta = 1.
- `perceptual` (Hou et al. 2017): loss = weight * feature_loss(x01, y01) + beta * mean_b KL_b, where
  feature_loss is any function of two [0, 1] image batches to a scalar (the VGG19 feature MSE).
"""

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

KINDS = ("bce_sum", "mse_sum", "pvae", "perceptual")
# torch.nn.functional.binary_cross_entropy: log clamp and the denominator guard of its gradient.
TORCH_BCE_LOG_MIN = -100.0
TORCH_BCE_EPS = 1e-12

FeatureLoss = Callable[[jax.Array, jax.Array], jax.Array]


class Terms(NamedTuple):
  loss: jax.Array  # scalar the optimizer minimises
  reconstruction: jax.Array  # the reconstruction term as the original reports it
  kl: jax.Array  # the KL term as the original reports it
  unweighted: jax.Array  # reconstruction + kl (the PVAE's `loss_wo_weight`)


class Spec(NamedTuple):
  """A loss: its kind and weights. `feature_loss` only for `perceptual`."""
  kind: str
  beta: float = 1.0  # KL weight
  alpha: float = 1.0  # reconstruction weight (pvae, perceptual)
  feature_loss: FeatureLoss | None = None


@jax.custom_vjp
def torch_bce(y: jax.Array, x: jax.Array) -> jax.Array:
  """Elementwise F.binary_cross_entropy(y, x), reduction='none', as torch computes it."""
  return ((x - 1.0) * jnp.maximum(jnp.log(1.0 - y), TORCH_BCE_LOG_MIN)
          - x * jnp.maximum(jnp.log(y), TORCH_BCE_LOG_MIN))


def _torch_bce_fwd(y, x):
  return torch_bce(y, x), (y, x)


def _torch_bce_bwd(res, g):
  """torch's binary_cross_entropy_backward: g (y - x) / max((1 - y) y, 1e-12)."""
  y, x = res
  grad_y = g * (y - x) / jnp.maximum((1.0 - y) * y, TORCH_BCE_EPS)
  grad_x = g * (jnp.maximum(jnp.log(1.0 - y), TORCH_BCE_LOG_MIN)
                - jnp.maximum(jnp.log(y), TORCH_BCE_LOG_MIN))
  return grad_y, grad_x


torch_bce.defvjp(_torch_bce_fwd, _torch_bce_bwd)


def kl_per_image(mean: jax.Array, logvar: jax.Array) -> jax.Array:
  """[B] KL(N(mean, exp(logvar)) || N(0, I)) = -1/2 sum_j (1 + logvar - mean^2 - exp(logvar))."""
  return -0.5 * jnp.sum(1.0 + logvar - jnp.square(mean) - jnp.exp(logvar), axis=-1)


def compute(spec: Spec, x: jax.Array, recon: jax.Array, mean: jax.Array, logvar: jax.Array,
            input_range, output_range) -> Terms:
  """The loss of `spec` for one batch; x and recon in the model's input and output ranges."""
  dtype = jnp.promote_types(recon.dtype, jnp.float32)  # bfloat16 outputs are scored in float32
  x, recon, mean, logvar = (a.astype(dtype) for a in (x, recon, mean, logvar))
  batch = x.shape[0]
  kl = kl_per_image(mean, logvar)
  if spec.kind == "bce_sum":
    rec = jnp.sum(torch_bce(recon, x))
    return Terms((rec + spec.beta * jnp.sum(kl)) / batch, rec / batch, jnp.sum(kl) / batch,
                 (rec + jnp.sum(kl)) / batch)
  if spec.kind == "mse_sum":
    rec = jnp.sum(jnp.square(recon - x))
    return Terms(rec + spec.beta * jnp.sum(kl), rec, jnp.sum(kl), rec + jnp.sum(kl))
  x01 = (x - input_range[0]) / (input_range[1] - input_range[0])
  if spec.kind == "pvae":
    # keras.losses.mean_squared_error averages the channels, tf.reduce_mean the rest.
    target = output_range[0] + (output_range[1] - output_range[0]) * x01
    rec = jnp.mean(jnp.mean(jnp.square(target - recon), axis=-1))
    kl_mean = jnp.mean(kl)
    return Terms(spec.alpha * rec + spec.beta * kl_mean, rec, kl_mean, rec + kl_mean)
  if spec.kind == "perceptual":
    recon01 = (recon - output_range[0]) / (output_range[1] - output_range[0])
    rec = spec.feature_loss(x01, recon01).astype(dtype)
    kl_mean = jnp.mean(kl)
    return Terms(spec.alpha * rec + spec.beta * kl_mean, rec, kl_mean, rec + kl_mean)
  raise ValueError(f"unknown loss kind {spec.kind!r}; known: {', '.join(KINDS)}")
