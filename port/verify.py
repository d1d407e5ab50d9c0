"""Runs the torch original and the JAX port on the same inputs and epsilon; reports max abs diffs."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxvae import models
from port import tables

TOLERANCE = 1e-5  # fp32 max abs difference allowed between the original and the port.


def torch_reference(model_name: str, state_dict: dict[str, np.ndarray], latent_dim: int):
  """The original torch module in eval mode with `state_dict` loaded (strict)."""
  import torch  # pylint: disable=import-outside-toplevel
  from port import torch_ref  # pylint: disable=import-outside-toplevel

  module = getattr(torch_ref, tables.TORCH_MODELS[model_name].reference)(latent_dim)
  module.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state_dict.items()})
  return module.eval()


def max_abs_diffs(model_name: str, state_dict: dict[str, np.ndarray], model, variables,
                  batch: int = 8, seed: int = 0) -> dict[str, float]:
  """{'mean', 'logvar', 'recon'}: max |torch - jax| on random inputs in the model's input range."""
  import torch  # pylint: disable=import-outside-toplevel

  reference = torch_reference(model_name, state_dict, model.latent_dim)
  rng = np.random.default_rng(seed)
  x01 = rng.random((batch, *models.IMAGE_SHAPE), dtype=np.float32)
  x = np.asarray(models.to_model_range(x01, model.input_range), np.float32)
  eps = rng.standard_normal((batch, model.latent_dim), dtype=np.float32)
  with torch.inference_mode():
    recon_t, mean_t, logvar_t = reference(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))),
                                          torch.from_numpy(eps))
  with jax.default_matmul_precision("highest"):
    out = jax.jit(model.apply)(variables, jnp.asarray(x), jnp.asarray(eps))
  return {
      "mean": float(np.abs(np.asarray(out.mean) - mean_t.numpy()).max()),
      "logvar": float(np.abs(np.asarray(out.logvar) - logvar_t.numpy()).max()),
      "recon": float(np.abs(np.asarray(out.recon) - recon_t.numpy().transpose(0, 2, 3, 1)).max()),
  }
