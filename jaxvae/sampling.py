"""Generation engine: variations, reconstruction, prior samples, interpolation and latent edits.

All functions take and return images in [0, 1] ([B, H, W, C]; the variation engines also take
uint8 pixels k as k / 255); the conversion to and from each model's own value range happens
here. Randomness is keyed per (variation k, image b) as fold_in(fold_in(key, k), b), so an
image's variations do not depend on the batch it is in, and sharding or padding the batch
changes nothing. With per-image keys (`keyed_variations`, what --mode=generate uses) image b's
variation k draws from r = fold_in(keys[b], k) alone (noise from split(r)[0], eps from
split(r)[1]), whatever its batch, position, device or process.

Posterior sampling: z = mean + temperature * exp(logvar / 2) * eps, eps ~ N(0, I) per image and
variation ("per_sample"), or the PVAE original's rule ("pvae_shared"): one eps ~ N(0, 0.1^2 I)
per variation, shared by every image of the batch. temperature 0 is the deterministic z = mean.
Input noise (input_noise_std > 0) encodes clip(x + std * n, 0, 1) afresh for each variation.
A post-processing chain (jaxvae.postprocess spec, e.g. "report") runs on each decoded chunk inside
the same compiled call.

`variables` is either the flax variables of the model (the straightforward reference modules run)
or `jaxvae.fast.prepare(model, variables)` (the exact fast reformulation runs; what jaxvae.api
uses). `chunk_size` is taken as given (0: the whole batch in one step); jaxvae.api resolves the
backend's default once (jaxvae.chunking.resolve).
"""

import dataclasses
import functools
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec as P

from jaxvae import chunking, fast, models, placement, postprocess as postprocessing

RULES = ("per_sample", "pvae_shared")
PVAE_EPS_STD = 0.1
# uint8 k -> float32 k / 255 as the loaders divide, looked up (a device division may be inexact).
_UNIT = np.arange(256, dtype=np.float32) / 255.0


def _unit(images: jax.Array) -> jax.Array:
  """The variation engines' input as float32 in [0, 1]: uint8 pixels k looked up as k / 255."""
  return jnp.asarray(_UNIT)[images] if images.dtype == jnp.uint8 else images.astype(jnp.float32)
INTERPOLATIONS = ("linear", "slerp")


@dataclasses.dataclass(frozen=True)
class Options:
  """How variations are drawn and decoded (hashable: a static argument of the jitted engine)."""
  temperature: float = 1.0
  input_noise_std: float = 0.0
  rule: str = "per_sample"
  chunk_size: int = 0  # Images per compiled step; 0 = the whole batch (jaxvae.chunking).
  postprocess: str = ""  # jaxvae.postprocess spec applied to every decoded image; "" = off.

  def __post_init__(self):
    postprocessing.parse_spec(self.postprocess)
    if not self.temperature >= 0:
      raise ValueError(f"temperature must be >= 0, got {self.temperature}")
    if not self.input_noise_std >= 0:
      raise ValueError(f"input_noise_std must be >= 0, got {self.input_noise_std}")
    if self.rule not in RULES:
      raise ValueError(f"sampling rule must be one of {RULES}, got {self.rule!r}")
    if self.chunk_size < 0:
      raise ValueError(f"chunk_size must be >= 0, got {self.chunk_size}")


def encode(model: nn.Module, variables, images: jax.Array, chunk_size: int = 0):
  """[B, H, W, C] in [0, 1] -> (mean, logvar), each [B, L]."""
  x = models.to_model_range(images, model.input_range)
  if isinstance(variables, fast.Prepared):
    return fast.encode(model, variables, x, chunk_size)
  return chunking.map_chunks(lambda c: model.apply(variables, c, method=model.encode), x,
                             chunk_size)


def decode(model: nn.Module, variables, z: jax.Array, chunk_size: int = 0,
           postprocess: str = "") -> jax.Array:
  """[N, L] -> [N, H, W, C] in [0, 1], post-processed by the `postprocess` chain."""
  if isinstance(variables, fast.Prepared):
    y = fast.decode(model, variables, z, chunk_size)
  else:
    y = chunking.map_chunks(lambda c: model.apply(variables, c, method=model.decode), z,
                            chunk_size)
  images = models.to_unit_range(y, model.output_range)
  if not postprocess:
    return images
  return chunking.map_chunks(postprocessing.build_pipeline(postprocess), images, chunk_size)


encode_jit = jax.jit(encode, static_argnums=(0, 3))
decode_jit = jax.jit(decode, static_argnums=(0, 3, 4))


@functools.partial(jax.jit, static_argnames=("model", "chunk_size", "postprocess"))
def reconstruct(model: nn.Module, variables, images: jax.Array, chunk_size: int = 0,
                postprocess: str = "") -> jax.Array:
  """Deterministic reconstruction decode(mean): [B, H, W, C] -> [B, H, W, C]."""
  mean, _ = encode(model, variables, images, chunk_size)
  return decode(model, variables, mean, chunk_size, postprocess)


def variation_latent(model: nn.Module, variables, images: jax.Array, key: jax.Array,
                     index: jax.Array, options: Options) -> jax.Array:
  """Latents of ONE variation (key = that variation's key) for images with global `index`: [B, L]."""
  if options.input_noise_std > 0:
    noise_key = jax.random.split(key)[0]
    noise = jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(noise_key, i),
                                                 images.shape[1:]))(index)
    images = jnp.clip(images + options.input_noise_std * noise, 0.0, 1.0)
  mean, logvar = encode(model, variables, images, options.chunk_size)
  return _sample_posterior(mean, logvar, key, index, options)


def _variations_local(model, variables, images, key, index, num: int, options: Options):
  images = _unit(images)
  keys = jax.vmap(lambda k: jax.random.fold_in(key, k))(jnp.arange(num))
  if options.input_noise_std > 0:  # One encode per variation.
    z = jax.vmap(lambda k: variation_latent(model, variables, images, k, index, options))(keys)
  else:  # Encode once, then vmap only the sampling.
    mean_logvar = encode(model, variables, images, options.chunk_size)
    z = jax.vmap(lambda k: _sample_posterior(*mean_logvar, k, index, options))(keys)
  return _decode_variations(model, variables, jnp.swapaxes(z, 0, 1), options)


def _decode_variations(model, variables, z: jax.Array, options: Options) -> jax.Array:
  """[B, num, L] latents -> [B, num, H, W, C] images."""
  b, n, l = z.shape
  out = decode(model, variables, z.reshape(b * n, l), options.chunk_size, options.postprocess)
  return out.reshape(b, n, *out.shape[1:])


def _sample_posterior(mean, logvar, key, index, options: Options):
  """z for one variation's key, given the encoding: [B, L]."""
  if options.temperature == 0:
    return mean
  eps_key = jax.random.split(key)[1]
  if options.rule == "pvae_shared":
    eps = PVAE_EPS_STD * jax.random.normal(eps_key, mean.shape[1:])[None]
  else:
    eps = jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(eps_key, i),
                                               mean.shape[1:]))(index)
  return mean + options.temperature * jnp.exp(0.5 * logvar) * eps


@functools.partial(jax.jit, static_argnames=("model", "num", "options"))
def _variations_jit(model, variables, images, key, index, num, options):
  return _variations_local(model, variables, images, key, index, num, options)


class Generated(NamedTuple):
  images: jax.Array  # [B, K, H, W, C] float32 in [0, 1], or uint8 round(255 x) with as_uint8
  mean: jax.Array | None  # [B, K, L] the posterior mean each variation was drawn around
  logvar: jax.Array | None  # [B, K, L]
  z: jax.Array | None  # [B, K, L]


def _keyed_local(model, variables, images, keys, num: int, options: Options, latents: bool,
                 as_uint8: bool) -> Generated:
  """Variation k of image b from r = fold_in(keys[b], k): noise split(r)[0], eps split(r)[1]
  (x 0.1 under pvae_shared: each image its own eps, as a shared one would tie the batch)."""
  def draw(kk, i, shape):  # One normal draw per key r, from split(r)[i].
    return jax.vmap(lambda r: jax.random.normal(jax.random.split(r)[i], shape))(kk)

  images = _unit(images)
  scale, noise = PVAE_EPS_STD if options.rule == "pvae_shared" else 1.0, options.input_noise_std
  encoded = None if noise > 0 else encode(model, variables, images, options.chunk_size)

  def one(kk):  # [B] keys of one variation -> mean, logvar, z [B, L]
    mean, logvar = encoded or encode(model, variables, jnp.clip(
        images + noise * draw(kk, 0, images.shape[1:]), 0.0, 1.0), options.chunk_size)
    return mean, logvar, mean if options.temperature == 0 else (
        mean + options.temperature * jnp.exp(0.5 * logvar) * scale * draw(kk, 1, mean.shape[1:]))

  rkeys = jax.vmap(lambda k: jax.vmap(lambda r: jax.random.fold_in(r, k))(keys))(jnp.arange(num))
  mean, logvar, z = (jnp.swapaxes(a, 0, 1) for a in jax.vmap(one)(rkeys))  # [B, num, L]
  out = _decode_variations(model, variables, z, options)
  if as_uint8:
    out = jnp.round(jnp.clip(out, 0.0, 1.0) * 255.0).astype(jnp.uint8)
  return Generated(out, *((mean, logvar, z) if latents else (None, None, None)))


def keyed_variations(model: nn.Module, variables, images, keys: jax.Array, num: int,
                     options: Options = Options(), devices: list | None = None,
                     latents: bool = False, as_uint8: bool = False) -> Generated:
  """`num` variations of each image, drawn from fold_in(keys[b], k) only, in one compiled call.

  `images`: [B, H, W, C] in [0, 1], or uint8 pixels k read as k / 255 (on the devices, exactly
  the loaders' float32 division: a quarter of the bytes to move). `latents`: also the mean,
  log-variance and z of each variation; `as_uint8`: round(255 x) as uint8, on the devices.
  Devices and processes as in `variations` (each its own images, keys)."""
  if num < 1:
    raise ValueError(f"num_variations must be >= 1, got {num}")
  images = jnp.asarray(images)  # uint8 stays uint8 up to the devices (_unit).
  if not (isinstance(keys, jax.Array) and jnp.issubdtype(keys.dtype, jax.dtypes.prng_key)
          and keys.shape == images.shape[:1]):
    raise ValueError(f"keys must be typed keys (jax.random.key, fold_in, split), one per image: "
                     f"shape ({images.shape[0]},), got {getattr(keys, 'dtype', type(keys))}")
  devices = tuple(jax.local_devices() if devices is None else devices)
  pad = -images.shape[0] % sum(d.process_index == jax.process_index() for d in devices)
  args = [placement.pad_rows(a, pad) for a in (images, jax.random.key_data(keys))]
  fn = _sharded_fn(model, int(num), options, devices,
                   (str(jax.random.key_impl(keys)), latents, as_uint8))
  return placement.run_on_mesh(fn, variables, args, (P("batch"), P("batch")), images.shape[0],
                               devices)


def variations(model: nn.Module, variables, images, key: jax.Array | None, num: int,
               options: Options = Options(), devices: list | None = None,
               keys: jax.Array | None = None) -> jax.Array:
  """`num` variations of each image: [B, H, W, C] -> [B, num, H, W, C], one compiled call.

  With more than one device (all local devices by default), the batch is split over a 1-D mesh
  with shard_map; each device runs the whole pipeline on its share, with identical results.
  Several hosts: every process calls jax.distributed.initialize() first, then this with
  devices=jax.devices() and its own equal-sized share of the images; image b of process p is
  keyed as global index p * B + b, and each process gets its own share's variations back.

  `keys` ([B] typed keys) keys each image on its own instead, `key` unused (None allowed): the
  same keys give the same images in any batch, order, device or process (`keyed_variations`).
  """
  if keys is not None:
    return keyed_variations(model, variables, images, keys, num, options, devices).images
  if num < 1:
    raise ValueError(f"num_variations must be >= 1, got {num}")
  images = jnp.asarray(images)  # uint8 stays uint8 up to the devices (_unit).
  devices = jax.local_devices() if devices is None else devices
  if len(devices) == 1:
    return _variations_jit(model, variables, images, key, jnp.arange(images.shape[0]), num,
                           options)
  return _variations_sharded(model, variables, images, key, num, options, tuple(devices))


_PAD_INDEX = 2**31 - 1  # RNG index of padding images, whose outputs are dropped.


@functools.lru_cache(maxsize=64)
def _sharded_fn(model, num: int, options: Options, devices: tuple, keyed: tuple | None = None):
  """One jitted shard_map per configuration, so repeated calls do not recompile: fn(variables,
  images, key data, index), or with keyed = (key impl, latents, as_uint8) fn(variables, images,
  per-image key data)."""
  fn = lambda v, x, k, i: _variations_local(model, v, x, jax.random.wrap_key_data(k), i, num,
                                            options)
  specs = (P(), P("batch"), P(), P("batch"))
  if keyed is not None:
    (impl, latents, as_uint8), specs = keyed, (P(), P("batch"), P("batch"))
    fn = lambda v, x, k: _keyed_local(model, v, x, jax.random.wrap_key_data(k, impl=impl), num,
                                      options, latents, as_uint8)
  return jax.jit(jax.shard_map(fn, mesh=Mesh(np.array(devices), ("batch",)), in_specs=specs,
                               out_specs=P("batch")))


def _variations_sharded(model, variables, images, key, num, options, devices):
  me = jax.process_index()
  multihost = any(d.process_index != me for d in devices)
  b = images.shape[0]
  pad = -b % sum(d.process_index == me for d in devices)
  offset = me * b if multihost else 0
  index = np.concatenate([offset + np.arange(b), np.full(pad, _PAD_INDEX)]).astype(np.int32)
  return placement.run_on_mesh(_sharded_fn(model, num, options, devices), variables,
                               (placement.pad_rows(images, pad), jax.random.key_data(key), index),
                               (P("batch"), P(), P("batch")), b, devices)


@functools.partial(jax.jit, static_argnames=("model", "n", "chunk_size", "postprocess"))
def sample(model: nn.Module, variables, key: jax.Array, n: int, temperature: float = 1.0,
           chunk_size: int = 0, postprocess: str = "") -> jax.Array:
  """n faces decoded from the prior z ~ N(0, temperature^2 I): [n, H, W, C]."""
  latent_dim = model.latent_dim
  z = temperature * jax.random.normal(key, (n, latent_dim))
  return decode(model, variables, z, chunk_size, postprocess)


def slerp(z0: jax.Array, z1: jax.Array, t: jax.Array) -> jax.Array:
  """Spherical interpolation sin((1-t)w)/sin(w) z0 + sin(tw)/sin(w) z1; linear when w ~ 0."""
  n0 = z0 / jnp.linalg.norm(z0, axis=-1, keepdims=True)
  n1 = z1 / jnp.linalg.norm(z1, axis=-1, keepdims=True)
  omega = jnp.arccos(jnp.clip(jnp.sum(n0 * n1, -1, keepdims=True), -1.0, 1.0))
  so = jnp.sin(omega)
  safe = jnp.where(so < 1e-6, 1.0, so)
  spherical = (jnp.sin((1 - t) * omega) * z0 + jnp.sin(t * omega) * z1) / safe
  return jnp.where(so < 1e-6, (1 - t) * z0 + t * z1, spherical)


@functools.partial(jax.jit,
                   static_argnames=("model", "steps", "method", "chunk_size", "postprocess"))
def interpolate(model: nn.Module, variables, images_a: jax.Array, images_b: jax.Array,
                steps: int, method: str = "slerp", chunk_size: int = 0,
                postprocess: str = "") -> jax.Array:
  """Decodes `steps` latents from mean(a) to mean(b) inclusive: [B, steps, H, W, C]."""
  if method not in INTERPOLATIONS:
    raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {method!r}")
  za, _ = encode(model, variables, images_a, chunk_size)
  zb, _ = encode(model, variables, images_b, chunk_size)
  t = jnp.linspace(0.0, 1.0, steps)[None, :, None]  # [1, S, 1]
  za, zb = za[:, None], zb[:, None]  # [B, 1, L]
  z = slerp(za, zb, t) if method == "slerp" else (1 - t) * za + t * zb
  b, s, l = z.shape
  out = decode(model, variables, z.reshape(b * s, l), chunk_size, postprocess)
  return out.reshape(b, s, *images_a.shape[1:])


@functools.partial(jax.jit, static_argnames=("model", "chunk_size"))
def attribute_direction(model: nn.Module, variables, with_attr: jax.Array,
                        without_attr: jax.Array, chunk_size: int = 0) -> jax.Array:
  """mean_i mu(with_i) - mean_j mu(without_j): [L]."""
  mu_with, _ = encode(model, variables, with_attr, chunk_size)
  mu_without, _ = encode(model, variables, without_attr, chunk_size)
  return mu_with.mean(0) - mu_without.mean(0)


@functools.partial(jax.jit, static_argnames=("model", "chunk_size", "postprocess"))
def edit(model: nn.Module, variables, images: jax.Array, direction: jax.Array,
         strengths: jax.Array, chunk_size: int = 0, postprocess: str = "") -> jax.Array:
  """decode(mu(x) + s * direction) for each strength s: [B, S, H, W, C]."""
  mu, _ = encode(model, variables, images, chunk_size)
  z = mu[:, None] + strengths[None, :, None] * direction  # [B, S, L]
  b, s, l = z.shape
  out = decode(model, variables, z.reshape(b * s, l), chunk_size, postprocess)
  return out.reshape(b, s, *images.shape[1:])
