"""From-scratch initialisation as each original framework does it, drawn in numpy.

torch (Vanilla VAE, Beta-VAE, DFC-VAE): Conv2d, ConvTranspose2d and Linear weights and biases
~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming_uniform with a = sqrt(5)); fan_in is in_channels
x kh x kw for Conv2d, out_channels x kh x kw for ConvTranspose2d (torch reads it off the
weight's second axis), in_features for Linear. In the flax layouts (Conv HWIO, ConvTranspose
(kh, kw, out, in) as the port writes it, Dense (in, out)) all three are prod(kernel.shape[:-1]).
Keras (PVAE): kernels GlorotUniform, limit sqrt(6 / (fan_in + fan_out)), biases 0.
BatchNorm in both: scale 1, bias 0, running mean 0, running variance 1.
"""

from typing import Any

import jax
import numpy as np

from jaxvae import models

FRAMEWORK = {"vanilla": "torch", "betavae": "torch", "dfcvae": "torch", "pvae": "keras"}


def _names(path) -> list[str]:
  return [str(getattr(k, "key", k)) for k in path]


def original_init(model_name: str, model, seed: int) -> Any:
  """Variables of `model` initialised as its original framework would, from numpy's (seed)."""
  framework = FRAMEWORK[model_name]
  rng = np.random.default_rng([seed, 0x1417])
  abstract = models.abstract_variables(model)
  kernels = {tuple(_names(p)[:-1]): a.shape for p, a in
             jax.tree_util.tree_flatten_with_path(abstract)[0] if _names(p)[-1] == "kernel"}

  def leaf(path, a):
    names = _names(path)
    collection, module, name = names[0], tuple(names[:-1]), names[-1]
    if collection == "batch_stats":
      return np.full(a.shape, 1.0 if name == "var" else 0.0, np.float32)
    if module[-1] == "bn":
      return np.full(a.shape, 1.0 if name == "scale" else 0.0, np.float32)
    shape = kernels[module]
    fan_in = int(np.prod(shape[:-1]))
    if framework == "keras":
      if name == "bias":
        return np.zeros(a.shape, np.float32)
      fan_out = int(np.prod(shape[:-2])) * shape[-1]
      limit = np.sqrt(6.0 / (fan_in + fan_out))
      return rng.uniform(-limit, limit, a.shape).astype(np.float32)
    bound = 1.0 / np.sqrt(fan_in)
    return rng.uniform(-bound, bound, a.shape).astype(np.float32)

  return jax.tree_util.tree_map_with_path(leaf, abstract)
