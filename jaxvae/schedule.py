"""XLA flags of the CPU schedule and JAX's compilation cache. Imports no jax at module level.

XLA reads XLA_FLAGS once, when jax initialises its backends, so `configure_xla_flags` must run
before the first `import jax` of the process (main.py, benchmarks). Measured on a 2-core AMD
EPYC (Zen 4) with jaxlib 0.10.2 (benchmarks/schedule.py re-measures these choices):

- `--xla_cpu_experimental_ynn_fusion_type=dot`: jaxlib 0.10.2 hands convolutions to YNNPACK,
  whose convolutions slow down sharply above a batch of ~4; with this flag only dots go to
  YNNPACK and convolutions take XLA's own path, which holds up to chunks of 16-32.
- Running chunks in parallel on two host devices, one thread each
  (`--xla_force_host_platform_device_count=2 --xla_cpu_multi_thread_eigen=false`; the batch is
  split with shard_map by jaxvae.sampling), instead of splitting every small op over the cores.
"""

import os

from jaxvae import paths

YNN_DOT_ONLY = "--xla_cpu_experimental_ynn_fusion_type=dot"
SINGLE_THREADED_OPS = "--xla_cpu_multi_thread_eigen=false"
HOST_DEVICES = "--xla_force_host_platform_device_count"

MAX_CORES_FOR_HOST_DEVICES = 4


def cpu_host_devices(cpu_count: int | None = None) -> int:
  """Host devices that run decode chunks in parallel, one thread each: one per core on small
  machines (measured on 2 cores: +5-50% over one multi-threaded device). Above
  MAX_CORES_FOR_HOST_DEVICES cores (not measured), 1: XLA's own threads, no device flags."""
  cpu_count = cpu_count or os.cpu_count() or 1
  return cpu_count if cpu_count <= MAX_CORES_FOR_HOST_DEVICES else 1


def cpu_xla_flags(host_devices: int | None = None) -> list[str]:
  """The XLA flags of the CPU schedule."""
  n = cpu_host_devices() if host_devices is None else host_devices
  flags = [YNN_DOT_ONLY]
  if n > 1:
    flags += [f"{HOST_DEVICES}={n}", SINGLE_THREADED_OPS]
  return flags


def configure_xla_flags(environ=None, host_devices: int | None = None) -> list[str]:
  """Adds the CPU schedule's flags to XLA_FLAGS, keeping every flag the user already set.

  A flag whose name the user's XLA_FLAGS already mentions is left alone; JAXVAE_XLA_FLAGS=0
  in the environment turns the whole schedule off. Call before jax is imported; returns the
  flags added.
  """
  environ = os.environ if environ is None else environ
  if environ.get("JAXVAE_XLA_FLAGS", "1") == "0":
    return []
  current = environ.get("XLA_FLAGS", "")
  present = {f.split("=")[0] for f in current.split()}
  added = [f for f in cpu_xla_flags(host_devices) if f.split("=")[0] not in present]
  if added:
    environ["XLA_FLAGS"] = " ".join([*current.split(), *added])
  return added


def enable_compilation_cache(cache_dir: str | None = None) -> str | None:
  """Turns on JAX's persistent compilation cache (imports jax; call after configure_xla_flags).

  Directory: `cache_dir`, else jaxvae.paths.compilation_cache_dir() ($JAXVAE_COMPILATION_CACHE,
  else <$JAXVAE_CACHE>/xla; "0" or "" turns it off). Every compiled program is written (no
  minimum compile time or size): a fresh process then skips the compiles of prepare, reconstruct
  and variations alike (benchmarks/compile_cache.py). Returns the directory, or None when off.
  """
  if cache_dir is None:
    cache_dir = paths.compilation_cache_dir()
  if not cache_dir or cache_dir == "0":
    return None
  import jax  # pylint: disable=import-outside-toplevel
  jax.config.update("jax_compilation_cache_dir", cache_dir)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  return cache_dir
