"""Where jaxvae keeps its caches and finds offline mirrors (environment variables; imports no jax).

- JAXVAE_CACHE: the root of every cache (default $XDG_CACHE_HOME/jaxvae or ~/.cache/jaxvae):
  `downloads/` (published source files), `checkpoints/` (their Orbax ports), `xla/` (JAX's
  persistent compilation cache), and the per-feature caches below it.
- JAXVAE_COMPILATION_CACHE: the compilation cache's own place ("0" or "" turns it off).
- JAXVAE_MIRROR: os.pathsep-separated folders holding published files, for machines without
  network; a folder that does not exist is an error, not silently skipped.
"""

import os

CACHE_ENV = "JAXVAE_CACHE"
COMPILATION_CACHE_ENV = "JAXVAE_COMPILATION_CACHE"
MIRROR_ENV = "JAXVAE_MIRROR"


def cache_dir(*parts: str) -> str:
  """$JAXVAE_CACHE, else $XDG_CACHE_HOME/jaxvae, else ~/.cache/jaxvae; `parts` joined below it."""
  root = os.environ.get(CACHE_ENV)
  if not root:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    root = os.path.join(base, "jaxvae")
  return os.path.join(root, *parts)


def compilation_cache_dir() -> str | None:
  """$JAXVAE_COMPILATION_CACHE when set ("0" or "" = off, None), else <cache>/xla."""
  if COMPILATION_CACHE_ENV in os.environ:
    value = os.environ[COMPILATION_CACHE_ENV]
    return None if value in ("", "0") else value
  return cache_dir("xla")


def mirror_dirs() -> list[str]:
  """The folders of $JAXVAE_MIRROR; raises FileNotFoundError naming one that does not exist."""
  folders = [f for f in os.environ.get(MIRROR_ENV, "").split(os.pathsep) if f]
  missing = [f for f in folders if not os.path.isdir(f)]
  if missing:
    raise FileNotFoundError(f"{MIRROR_ENV} names folder(s) that do not exist: "
                            f"{', '.join(missing)}")
  return folders
