"""The originals' optimizers in optax (torch Adam, Keras 3 Adam) and Keras' ReduceLROnPlateau.

torch.optim.Adam and optax.adam compute the same update:
  m <- b1 m + (1 - b1) g,  v <- b2 v + (1 - b2) g^2,
  p <- p - lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps),  eps 1e-8.
Keras 3's Adam puts its eps (1e-7) outside the bias correction, so it is a different function:
  m <- m + (g - m)(1 - b1),  v <- v + (g^2 - v)(1 - b2),
  p <- p - m * (lr sqrt(1 - b2^t) / (1 - b1^t)) / (sqrt(v) + eps);
`keras_adam` computes exactly that, in Keras' order of operations. Both are wrapped in
`optax.inject_hyperparams`, so the learning rate lives in the optimizer state, where the plateau
rule changes it and checkpoints keep it.
"""

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

KINDS = ("torch_adam", "keras_adam")


class KerasAdamState(NamedTuple):
  count: jax.Array  # int32, Keras' `iterations`
  m: Any
  v: Any


def keras_adam(learning_rate: float, beta_1: float = 0.9, beta_2: float = 0.999,
               epsilon: float = 1e-7) -> optax.GradientTransformation:
  """keras.optimizers.Adam (Keras 3, amsgrad off, no weight decay) as an optax transformation."""

  def init(params):
    return KerasAdamState(jnp.zeros([], jnp.int32), jax.tree.map(jnp.zeros_like, params),
                          jax.tree.map(jnp.zeros_like, params))

  def update(grads, state, params=None):
    del params

    def alpha(dtype):  # Keras casts the rate and the step to each variable's dtype.
      step = (state.count + 1).astype(dtype)
      b1_power = jnp.power(jnp.asarray(beta_1, dtype), step)
      b2_power = jnp.power(jnp.asarray(beta_2, dtype), step)
      return jnp.asarray(learning_rate).astype(dtype) * jnp.sqrt(1 - b2_power) / (1 - b1_power)

    m = jax.tree.map(lambda m, g: m + (g - m) * (1 - beta_1), state.m, grads)
    v = jax.tree.map(lambda v, g: v + (jnp.square(g) - v) * (1 - beta_2), state.v, grads)
    updates = jax.tree.map(lambda m, v: -((m * alpha(m.dtype)) / (jnp.sqrt(v) + epsilon)), m, v)
    return updates, KerasAdamState(state.count + 1, m, v)

  return optax.GradientTransformation(init, update)


def make(kind: str, learning_rate: float) -> optax.GradientTransformation:
  """`torch_adam` (optax.adam, torch's defaults) or `keras_adam`, learning rate injectable."""
  if kind == "torch_adam":
    return optax.inject_hyperparams(optax.adam)(learning_rate=learning_rate, b1=0.9, b2=0.999,
                                                eps=1e-8)
  if kind == "keras_adam":
    return optax.inject_hyperparams(keras_adam)(learning_rate=learning_rate)
  raise ValueError(f"unknown optimizer {kind!r}; known: {', '.join(KINDS)}")


def learning_rate(opt_state) -> jax.Array:
  return opt_state.hyperparams["learning_rate"]


def with_learning_rate(opt_state, value: float):
  """The optimizer state with its learning rate replaced (float32, as Keras stores it)."""
  old = opt_state.hyperparams["learning_rate"]
  new = jnp.asarray(np.float32(value), old.dtype)
  if hasattr(old, "sharding"):
    new = jax.device_put(new, old.sharding)
  return opt_state._replace(hyperparams={**opt_state.hyperparams, "learning_rate": new})


@dataclasses.dataclass
class Plateau:
  """keras.callbacks.ReduceLROnPlateau(mode='min'), stepped once per evaluation.

  improvement: current < best - min_delta (the first value always improves). Otherwise, outside
  cooldown, `wait` grows; at `patience` the rate becomes max(lr * factor, min_lr) when
  lr > min_lr, then cooldown starts and `wait` resets.
  """
  factor: float = 0.2
  patience: int = 2
  min_delta: float = 1e-4
  cooldown: int = 0
  min_lr: float = 0.0
  best: float | None = None
  wait: int = 0
  cooldown_counter: int = 0

  def update(self, current: float, lr: float) -> float:
    """The learning rate after an evaluation scoring `current` (lr is the float32 rate in use)."""
    lr = float(np.float32(lr))
    if self.cooldown_counter > 0:
      self.cooldown_counter -= 1
      self.wait = 0
    if self.best is None or current + self.min_delta < self.best:
      self.best = float(current)
      self.wait = 0
    elif self.cooldown_counter <= 0:
      self.wait += 1
      if self.wait >= self.patience and lr > np.float32(self.min_lr):
        lr = max(lr * self.factor, self.min_lr)
        self.cooldown_counter = self.cooldown
        self.wait = 0
    return lr

  def state_dict(self) -> dict:
    return {"best": self.best, "wait": self.wait, "cooldown_counter": self.cooldown_counter}

  def load_state_dict(self, state: dict) -> None:
    best = state.get("best")
    self.best = None if best is None or (isinstance(best, float) and math.isnan(best)) else best
    self.wait = int(state.get("wait", 0))
    self.cooldown_counter = int(state.get("cooldown_counter", 0))
