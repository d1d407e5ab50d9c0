"""The PVAE notebook's training step, rebuilt with Keras 3's own layers, losses and optimizer.

The notebook (Kaggle, arnrob; copy in AbhiJeet70/CVAE-PL Perceptual_Loss_in_VAE.ipynb) trains
with tf.keras and GradientTape:
    reconstruction_loss = tf.reduce_mean(keras.losses.mean_squared_error(data, reconstruction))
    kl_loss = tf.reduce_mean(tf.reduce_sum(-0.5 * (1 + z_log_sigma - tf.square(z_mean)
                                                   - tf.exp(z_log_sigma)), axis=1))
    loss = alpha * reconstruction_loss + beta * kl_loss       (alpha 1.8, beta 10)
    optimizer = keras.optimizers.Adam(0.0015)
On Keras 3's JAX backend the same step is the documented stateless form: `stateless_call` with
training=True (BatchNormalization in training mode, its moving statistics returned), gradients
by jax.value_and_grad, and `optimizer.stateless_apply`. The encoder's Lambda sampling layer draws
its own noise; here the encoder is cut before it and z = z_mean + exp(z_log_sigma / 2) * eps is
formed from the given eps, the Lambda's own formula.

float64: Keras 3 computes BatchNormalization in backend.result_type(input dtype, "float32") and
keras.ops.mean likewise, and Keras' promotion rules make that float32 even for float64 inputs.
A float64 reference (dtype="float64", for parity runs whose rounding noise must stay far below
Adam's eps) therefore lets BatchNormalization keep float64 and writes the two loss means in
jax.numpy; layers, their training-mode updates and the optimizer are Keras' own.
"""

import contextlib
import importlib
from typing import Any, NamedTuple
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np

from port import convert, keras_ref
from port.keras import WEIGHTS

ALPHA = 1.8
BETA = 10.0
LEARNING_RATE = 0.0015


class StepResult(NamedTuple):
  loss: float
  reconstruction_loss: float
  kl_loss: float
  grads: dict  # flax-layout {"params": ...} tree of gradients
  recon: np.ndarray  # [B, 64, 64, 3] training-mode reconstruction, 0-255 scale


class _KeepFloat64:
  """Proxy of keras' backend module whose result_type keeps float64."""

  def __init__(self, backend):
    self._backend = backend

  def __getattr__(self, name):
    return getattr(self._backend, name)

  def result_type(self, *dtypes):
    if any(str(d) == "float64" for d in dtypes):
      return "float64"
    return self._backend.result_type(*dtypes)


def _batch_norm_precision(dtype: str):
  if dtype != "float64":
    return contextlib.nullcontext()
  module = importlib.import_module("keras.src.layers.normalization.batch_normalization")
  return mock.patch.object(module, "backend", _KeepFloat64(module.backend))


class Trainer:
  """A built PVAE with flax `variables` loaded, its Adam, and a jitted notebook train_step."""

  def __init__(self, variables: Any, learning_rate: float = LEARNING_RATE,
               dtype: str = "float32"):
    keras = keras_ref.keras_module()
    self.keras = keras
    floatx, policy = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx(dtype)  # Layers keep the dtype they are built with.
    keras.config.set_dtype_policy(dtype)
    try:
      self.model = keras_ref.build_pvae()
    finally:
      keras.config.set_floatx(floatx)
      keras.config.set_dtype_policy(policy)
    keras_ref.set_flax_variables(self.model, variables)
    self.encoder = keras.Model(self.model.encoder.inputs, self.model.encoder.outputs[:2])
    self.decoder = self.model.decoder
    self.names = {}  # id(Keras variable) -> (collection, flax module, flax leaf)
    for module, layer in keras_ref.slot_layers(self.model).items():
      kind = "bn" if isinstance(layer, keras.layers.BatchNormalization) else "conv"
      for keras_name, collection, flax_name in WEIGHTS[kind]:
        self.names[id(getattr(layer, keras_name))] = (collection, module, flax_name)
    self.trainable = self.encoder.trainable_variables + self.decoder.trainable_variables
    self.non_trainable = (self.encoder.non_trainable_variables
                          + self.decoder.non_trainable_variables)
    self.optimizer = keras.optimizers.Adam(learning_rate)
    self.optimizer.build(self.trainable)
    self.dtype = dtype
    self.tv = [v.value for v in self.trainable]
    self.ntv = [v.value for v in self.non_trainable]
    self.ov = [v.value for v in self.optimizer.variables]
    self._step = jax.jit(self._train_step)

  def _loss(self, tv, ntv, data, eps):
    keras, ops = self.keras, self.keras.ops
    ne, nne = len(self.encoder.trainable_variables), len(self.encoder.non_trainable_variables)
    (z_mean, z_log_sigma), enc_ntv = self.encoder.stateless_call(
        tv[:ne], ntv[:nne], self.model.preprocesser(data), training=True)
    z = z_mean + ops.exp(z_log_sigma / 2) * eps
    reconstruction, dec_ntv = self.decoder.stateless_call(tv[ne:], ntv[nne:], z, training=True)
    kl_loss = -0.5 * (1 + z_log_sigma - ops.square(z_mean) - ops.exp(z_log_sigma))
    if self.dtype == "float64":  # keras.ops.mean would compute in float32 (module docstring).
      reconstruction_loss = jnp.mean(jnp.mean(jnp.square(data - reconstruction), axis=-1))
      kl_loss = jnp.mean(jnp.sum(kl_loss, axis=1))
    else:
      reconstruction_loss = ops.mean(keras.losses.mean_squared_error(data, reconstruction))
      kl_loss = ops.mean(ops.sum(kl_loss, axis=1))
    loss = ALPHA * reconstruction_loss + BETA * kl_loss
    return loss, (list(enc_ntv) + list(dec_ntv), reconstruction_loss, kl_loss, reconstruction)

  def _train_step(self, tv, ntv, ov, data, eps):
    (loss, aux), grads = jax.value_and_grad(self._loss, has_aux=True)(tv, ntv, data, eps)
    new_tv, new_ov = self.optimizer.stateless_apply(ov, grads, tv)
    return loss, aux, grads, new_tv, new_ov

  def step(self, data: np.ndarray, eps: np.ndarray) -> StepResult:
    """One training step on `data` ([B, 64, 64, 3] pixels on the 0-255 scale), eps [1, L]."""
    with _batch_norm_precision(self.dtype):
      loss, (ntv, rec, kl, recon), grads, self.tv, self.ov = self._step(
          self.tv, self.ntv, self.ov, np.asarray(data, self.dtype), np.asarray(eps, self.dtype))
    self.ntv = list(ntv)
    tree = convert.unflatten({"/".join(self.names[id(var)]): np.asarray(g)
                              for var, g in zip(self.trainable, grads)})
    return StepResult(float(loss), float(rec), float(kl), tree, np.asarray(recon))

  def variables(self) -> dict:
    """The current weights and moving statistics in the flax PVAE layout."""
    return convert.unflatten({"/".join(self.names[id(var)]): np.asarray(value)
                              for var, value in zip(self.trainable + self.non_trainable,
                                                    self.tv + self.ntv)})

  def decode(self, z: np.ndarray) -> np.ndarray:
    """Inference-mode decoder output (0-255 scale) with the current weights."""
    ne, nne = len(self.encoder.trainable_variables), len(self.encoder.non_trainable_variables)
    with _batch_norm_precision(self.dtype):
      out = jax.jit(lambda tv, ntv, z: self.decoder.stateless_call(tv, ntv, z, training=False)[0])(
          self.tv[ne:], self.ntv[nne:], np.asarray(z, self.dtype))
    return np.asarray(out)
