"""jaxvae: four published face VAEs in JAX/Flax with exact parity to the originals.

`jaxvae.pretrained(name)` and `jaxvae.load(dir)` return a `jaxvae.VAE` (jaxvae/api.py). They are
imported on first use, so that `import jaxvae.schedule` can set XLA flags before jax starts.
"""

_API = ("pretrained", "load", "VAE")


def __getattr__(name: str):
  if name in _API:
    from jaxvae import api  # pylint: disable=import-outside-toplevel
    return getattr(api, name)
  raise AttributeError(f"module 'jaxvae' has no attribute {name!r}")


def __dir__():
  return sorted(list(globals()) + list(_API))
