"""The Python API: `jaxvae.pretrained(name)` returns a `VAE` whose methods take and return images.

    import jaxvae
    vae = jaxvae.pretrained("betavae-l200")             # a published name or a checkpoint dir
    faces = vae.load_images("bundled:astronaut")         # [N, 64, 64, 3] in [0, 1], model's crop
    variations = vae.variations(faces, 10, seed=0)       # [N, 10, 64, 64, 3] in [0, 1]

Images go in and come out as [N, 64, 64, 3] float arrays in [0, 1] (numpy or jax); the
conversion to each model's own value range happens inside. Methods take the config's options
(temperature, input noise, sampling rule, post-processing, chunk size) as keyword arguments.
The modes of main.py call the same object.
"""

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxvae import checkpoint, chunking, data, fast, models, options, sampling, weights

IMAGE_SHAPE = models.IMAGE_SHAPE
TRAVERSAL_STD = options.TRAVERSAL_STD


class Traversal(NamedTuple):
  images: jax.Array  # [N, D, V, 64, 64, 3]: dimension dims[n, d] set to mean + values[v] * std
  dims: np.ndarray  # [N, D] latent dimensions, largest KL first
  values: np.ndarray  # [V]
  kl: np.ndarray  # [N, L] per-dimension KL(q(z|x) || N(0, 1)) of each input


def kl_per_dim(mean: Any, logvar: Any) -> np.ndarray:
  """KL(N(mean, exp(logvar)) || N(0, 1)) per latent dimension: 0.5 (mean^2 + e^logvar - 1 - logvar)."""
  mean, logvar = np.asarray(mean, np.float64), np.asarray(logvar, np.float64)
  return 0.5 * (mean ** 2 + np.exp(logvar) - 1.0 - logvar)


def _images(images: Any, what: str = "images") -> jax.Array:
  """[N, 64, 64, 3] float in [0, 1], checked; a single [64, 64, 3] image is not accepted silently."""
  a = jnp.asarray(images)
  if a.ndim != 4 or tuple(a.shape[1:]) != IMAGE_SHAPE:
    raise ValueError(f"{what} must be [N, 64, 64, 3] in [0, 1], got shape {tuple(a.shape)}"
                     + ("; add a batch axis with images[None]" if a.shape == IMAGE_SHAPE else ""))
  if not jnp.issubdtype(a.dtype, jnp.floating):
    raise ValueError(f"{what} must be floats in [0, 1], got dtype {a.dtype} (divide uint8 by 255)")
  return a.astype(jnp.float32)


def _key(seed: int | jax.Array) -> jax.Array:
  if isinstance(seed, jax.Array) and jnp.issubdtype(seed.dtype, jax.dtypes.prng_key):
    return seed
  if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
    raise ValueError(f"seed must be an integer in [0, 2**32) or a jax.random.key, got {seed!r}")
  return jax.random.key(int(seed))


class VAE:
  """A loaded model ready for inference (fast path where the model has one)."""

  def __init__(self, name: str, model: Any, variables: Any, metadata: dict | None = None,
               checkpoint_dir: str | None = None, chunk_size: int = 0):
    self.name = name  # registry name: vanilla, betavae, dfcvae, pvae
    self.model = model  # the reference flax module
    self.variables = variables  # its raw variables
    self.metadata = metadata or {}
    self.checkpoint_dir = checkpoint_dir
    self.chunk_size = chunking.resolve(chunk_size, name)
    self.params = fast.for_inference(model, variables)  # what the engine runs on

  def __repr__(self) -> str:
    return (f"VAE({self.name!r}, latent_dim={self.model.latent_dim}, "
            f"checkpoint={self.checkpoint_dir!r}, fast_path={fast.recipe(self.model) is not None})")

  @property
  def latent_dim(self) -> int:
    return self.model.latent_dim

  def options(self, temperature: float = 1.0, deterministic: bool = False,
              input_noise_std: float = 0.0, sampling_rule: str | None = None,
              postprocess: str = "") -> sampling.Options:
    """The engine's options; sampling_rule None = the model's original rule."""
    rule = sampling_rule or ("pvae_shared" if self.name == "pvae" else "per_sample")
    return sampling.Options(temperature=0.0 if deterministic else float(temperature),
                            input_noise_std=float(input_noise_std), rule=rule,
                            chunk_size=self.chunk_size, postprocess=postprocess)

  def load_images(self, spec: str, align: str = "auto",
                  log: Callable[[str], None] = lambda s: None) -> np.ndarray:
    """Files, folders, globs or bundled:<name> portraits, faces aligned as CelebA's (`align`, see
    jaxvae.data.load_faces) and cropped as this model was trained: [N, 64, 64, 3] in [0, 1]."""
    inputs = data.load(spec, models.get_info(self.name).celeba_box, align=align)
    for path, why in inputs.skipped:
      log(f"warning: skipped {path}: {why}")
    return inputs.images

  def encode(self, images) -> tuple[jax.Array, jax.Array]:
    """[N, 64, 64, 3] -> (mean, logvar), each [N, L]."""
    return sampling.encode_jit(self.model, self.params, _images(images), self.chunk_size)

  def decode(self, z, postprocess: str = "") -> jax.Array:
    """[N, L] latents -> [N, 64, 64, 3] images."""
    z = jnp.asarray(z, jnp.float32)
    if z.ndim != 2 or z.shape[1] != self.latent_dim:
      raise ValueError(f"z must be [N, {self.latent_dim}], got shape {tuple(z.shape)}")
    return sampling.decode_jit(self.model, self.params, z, self.chunk_size, postprocess)

  def reconstruct(self, images, postprocess: str = "") -> jax.Array:
    """decode(mean(images)): [N, 64, 64, 3]."""
    return sampling.reconstruct(self.model, self.params, _images(images), self.chunk_size,
                                postprocess)

  def variations(self, images, num_variations: int = 10, seed: int | jax.Array = 0,
                 **options: Any) -> jax.Array:
    """`num_variations` posterior samples of each image, decoded: [N, K, 64, 64, 3].

    Keyword options as `options()`: temperature, deterministic, input_noise_std, sampling_rule,
    postprocess.
    """
    return sampling.variations(self.model, self.params, _images(images), _key(seed),
                               int(num_variations), self.options(**options))

  def sample(self, n: int, seed: int | jax.Array = 0, temperature: float = 1.0,
             postprocess: str = "") -> jax.Array:
    """`n` faces decoded from the prior N(0, temperature^2 I): [n, 64, 64, 3]."""
    if temperature < 0:
      raise ValueError(f"temperature must be >= 0, got {temperature}")
    return sampling.sample(self.model, self.params, _key(seed), int(n), float(temperature),
                           self.chunk_size, postprocess)

  def interpolate(self, images_a, images_b, steps: int = 8, method: str = "slerp",
                  postprocess: str = "") -> jax.Array:
    """Latent paths from mean(a) to mean(b), endpoints included: [N, steps, 64, 64, 3]."""
    return sampling.interpolate(self.model, self.params, _images(images_a, "images_a"),
                                _images(images_b, "images_b"), int(steps), method,
                                self.chunk_size, postprocess)

  def traverse(self, images, num_dims: int | None = 8, values=(-3, -2, -1, 0, 1, 2, 3),
               std: str = "prior", postprocess: str = "") -> Traversal:
    """Latent traversals: for each input, its `num_dims` dimensions with the largest KL (None: all,
    in order), decoded at mean + v * std for each v, the other dimensions at the mean.

    std "prior" is 1 (the prior's unit, as Beta-VAE papers traverse); "posterior" is the input's
    own exp(logvar / 2) in that dimension.
    """
    if std not in TRAVERSAL_STD:
      raise ValueError(f"std must be one of {TRAVERSAL_STD}, got {std!r}")
    mean, logvar = (np.asarray(a) for a in self.encode(images))
    kl = kl_per_dim(mean, logvar)
    n, latent = mean.shape
    d = latent if num_dims is None else min(int(num_dims), latent)
    dims = (np.argsort(-kl, axis=1, kind="stable")[:, :d] if num_dims is not None
            else np.tile(np.arange(latent), (n, 1)))
    v = np.asarray(values, np.float32).reshape(-1)
    scale = np.ones_like(mean) if std == "prior" else np.exp(0.5 * logvar)
    z = np.repeat(np.repeat(mean[:, None, None], d, 1), len(v), 2)  # [N, D, V, L]
    rows, cols = np.arange(n)[:, None], dims  # [N, D]
    offset = v[None, None, :] * np.take_along_axis(scale, dims, 1)[..., None]  # [N, D, V]
    z[rows, np.arange(d)[None, :], :, cols] = mean[rows, cols][..., None] + offset
    out = self.decode(z.reshape(-1, latent), postprocess)
    return Traversal(out.reshape(n, d, len(v), *IMAGE_SHAPE), dims, v, kl)

  def attribute_direction(self, with_attribute, without_attribute) -> jax.Array:
    """mean mu(with) - mean mu(without): [L]."""
    return sampling.attribute_direction(self.model, self.params,
                                        _images(with_attribute, "with_attribute"),
                                        _images(without_attribute, "without_attribute"),
                                        self.chunk_size)

  def edit(self, images, direction, strengths=(0.0, 0.5, 1.0, 1.5),
           postprocess: str = "") -> jax.Array:
    """decode(mu(x) + s * direction) for each strength s: [N, S, 64, 64, 3]."""
    return sampling.edit(self.model, self.params, _images(images), jnp.asarray(direction),
                         jnp.asarray(strengths, jnp.float32).reshape(-1), self.chunk_size,
                         postprocess)


def load(ckpt_dir: str, chunk_size: int = 0, **model_fields: Any) -> VAE:
  """A `VAE` from a checkpoint directory; `model_fields` override shape-free module fields."""
  loaded = checkpoint.load(ckpt_dir, **model_fields)
  return VAE(loaded.metadata["model"], loaded.model, loaded.variables, loaded.metadata,
             ckpt_dir, chunk_size)


def pretrained(spec: str, chunk_size: int = 0, log: Callable[[str], None] = lambda s: None,
               **model_fields: Any) -> VAE:
  """A published name (betavae-l200, betavae-l32, dfcvae-400, vanilla-l200), ported into the
  cache on first use (the only time `port`, and torch or Keras, is imported), or a directory
  written by `python -m port` or `--mode=train`."""
  return load(weights.ensure_ported(spec, log), chunk_size, **model_fields)
