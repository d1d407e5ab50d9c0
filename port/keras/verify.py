"""--verify for the PVAE: the Keras 3 original against the port, and Keras' own loading."""

import os
from typing import Callable

import numpy as np

from jaxvae import models
from port.keras.tables import PVAE_TABLE

def keras_load_agreement(path: str, variables, latent_dim: int,
                         log: Callable[[str], None] = lambda s: None) -> float | None:
  """Loads `path` with Keras' own load_weights into the reference PVAE and compares each layer
  with the port's arrays: the max abs difference over the layers Keras loaded (0.0 when they
  agree), or None when Keras cannot read the file (a TF SavedModel, another architecture)."""
  import warnings  # pylint: disable=import-outside-toplevel

  from port import keras_ref  # pylint: disable=import-outside-toplevel

  native = keras_ref.build_pvae(latent_dim)
  initial = {m: l.get_weights() for m, l in keras_ref.slot_layers(native).items()}
  try:
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")
      native.load_weights(path)
  except Exception as e:  # pylint: disable=broad-except  # Keras raises many kinds.
    log(f"keras load_weights cannot read {path} into the reference PVAE "
        f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
        "the mapping above is what the port used")
    return None
  mapped = keras_ref.build_pvae(latent_dim)
  keras_ref.set_flax_variables(mapped, variables)
  mapped_layers = keras_ref.slot_layers(mapped)
  worst, agree, skipped, conflicts = 0.0, [], [], []
  for module, layer in keras_ref.slot_layers(native).items():
    got, want = layer.get_weights(), mapped_layers[module].get_weights()
    if all(np.array_equal(a, b) for a, b in zip(got, want)):
      agree.append(module)
    elif all(np.array_equal(a, b) for a, b in zip(got, initial[module])):
      skipped.append(module)
    else:
      conflicts.append(module)
      worst = max([worst] + [float(np.abs(a - b).max()) for a, b in zip(got, want)])
  log(f"keras load_weights agrees with the mapping on {len(agree)}/{len(PVAE_TABLE)} layers"
      + (f"; keras left {', '.join(skipped)} unloaded" if skipped else "")
      + (f"; CONFLICTS on {', '.join(conflicts)}" if conflicts else ""))
  return worst


def max_abs_diffs(model, variables, source_path: str | None = None, batch: int = 8,
                  seed: int = 0, log: Callable[[str], None] = lambda s: None) -> dict[str, float]:
  """{'mean', 'logvar', 'recon'[, 'weights']}: max |Keras - JAX| on random uint8 images, one eps.

  The Keras original (port.keras_ref, Keras 3) runs with the ported arrays in its own layers;
  recon is compared on the [0, 1] scale (the original's 0-255 output / 255), and 'recon_255' is
  the same difference on the 0-255 scale, for the record. With `source_path` that Keras can load
  itself, 'weights' is the max abs difference between Keras' own loading and the port's mapping.
  """
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

  from port import keras_ref  # pylint: disable=import-outside-toplevel

  keras = keras_ref.keras_module()
  log(f"keras {keras.__version__} ({keras.backend.backend()} backend) vs jax on {batch} random "
      f"uint8 images, one shared eps of std {keras_ref.EPS_STD}")
  reference = keras_ref.build_pvae(model.latent_dim)
  keras_ref.set_flax_variables(reference, variables)
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, (batch, *models.IMAGE_SHAPE)).astype(np.uint8)
  eps = (keras_ref.EPS_STD * rng.standard_normal((1, model.latent_dim))).astype(np.float32)
  ref = keras_ref.forward(reference, images, eps)
  x = np.asarray(models.to_model_range(ref.x01, model.input_range), np.float32)
  with jax.default_matmul_precision("highest"):
    out = jax.jit(model.apply)(variables, jnp.asarray(x),
                               jnp.broadcast_to(jnp.asarray(eps), (batch, model.latent_dim)))
  lo, hi = model.output_range  # The original's (0, 255) unless overridden.
  recon01 = (np.asarray(out.recon, np.float64) - lo) / (hi - lo)
  diffs = {
      "mean": float(np.abs(np.asarray(out.mean) - ref.mean).max()),
      "logvar": float(np.abs(np.asarray(out.logvar) - ref.logvar).max()),
      "recon": float(np.abs(recon01 - ref.recon.astype(np.float64) / 255.0).max()),
      "recon_255": float(np.abs(np.asarray(out.recon) - ref.recon).max()),
  }
  if source_path is not None and os.path.isfile(source_path):
    agreement = keras_load_agreement(source_path, variables, model.latent_dim, log)
    if agreement is not None:
      diffs["weights"] = agreement
  return diffs
