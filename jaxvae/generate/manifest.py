"""The manifest of a generate run (manifest.json): its config, and every committed shard.

Every change goes through `update`: under an exclusive lock on `.lock` (several processes of a
multi-host run share the folder), read, change, write to a temporary file, fsync, rename, fsync
the folder. A shard counts as done only once it is listed here; its file was renamed into place
before. A run on a folder whose manifest holds another config is refused, naming each difference.
"""

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from typing import Any, Callable, Iterator

import jax
import numpy as np

from jaxvae import celeba, checkpoint, generated, options
from jaxvae.generate import keys

LOCK = ".lock"


@contextlib.contextmanager
def locked(root: str) -> Iterator[None]:
  with open(os.path.join(root, LOCK), "a") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def path(root: str) -> str:
  return os.path.join(root, generated.MANIFEST)


def read(root: str) -> dict | None:
  if not os.path.exists(path(root)):
    return None
  with open(path(root), encoding="utf-8") as f:
    return json.load(f)


def write(root: str, manifest: dict) -> None:
  """Atomic and durable: temporary file, fsync, rename, fsync of the folder."""
  fd, tmp = tempfile.mkstemp(prefix=".manifest-", dir=root)
  try:
    with os.fdopen(fd, "w", encoding="utf-8") as f:
      json.dump(manifest, f, indent=1)
      f.write("\n")
      f.flush()
      os.fsync(f.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, path(root))
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  dir_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
  try:
    os.fsync(dir_fd)
  finally:
    os.close(dir_fd)


def update(root: str, change: Callable[[dict], None]) -> dict:
  """Applies `change` to the manifest under the lock; returns the manifest written."""
  with locked(root):
    manifest = read(root)
    change(manifest)
    write(root, manifest)
    return manifest


def differences(old: Any, new: Any, prefix: str = "") -> list[str]:
  """Each field where two configs differ, as 'name: old in the workdir, new now'."""
  if isinstance(old, dict) and isinstance(new, dict):
    out = []
    for key in sorted(set(old) | set(new)):
      name = f"{prefix}.{key}" if prefix else key
      if key not in old or key not in new:
        out.append(f"{name}: {'absent' if key not in old else repr(old[key])} in the workdir, "
                   f"{'absent' if key not in new else repr(new[key])} now")
      else:
        out += differences(old[key], new[key], name)
    return out
  return [] if old == new else [f"{prefix}: {old!r} in the workdir, {new!r} now"]


def clear(root: str) -> None:
  """Removes a previous run's outputs from `root` (--overwrite)."""
  for entry in os.listdir(root):
    if entry == LOCK:
      continue
    if entry.startswith(("shard-", ".tmp-shard-", ".manifest-")) or entry in (
        generated.MANIFEST, "index.csv"):
      full = os.path.join(root, entry)
      shutil.rmtree(full) if os.path.isdir(full) else os.remove(full)


def start(root: str, fresh: dict, overwrite: bool) -> dict:
  """The manifest to continue: `fresh` when `root` holds none (or with `overwrite`); the stored
  one when its config equals fresh["config"]; otherwise a ConfigError naming the differences."""
  os.makedirs(root, exist_ok=True)
  with locked(root):
    old = read(root)
    if overwrite and old is not None:
      clear(root)
      old = None
    if old is None:
      write(root, fresh)
      return fresh
    if old.get("format_version") != fresh["format_version"]:
      raise options.ConfigError(f"{root} holds generate output of format_version "
                                f"{old.get('format_version')!r}; pass --overwrite or use another "
                                "--workdir")
    diff = differences(old["config"], fresh["config"])
    if diff:
      raise options.ConfigError(
          f"{root} holds the output of another generate config; differences: "
          + "; ".join(diff) + ". Run with the same config to resume it, pass --overwrite to "
          "replace it, or use another --workdir")
    return old


def committed(root: str, manifest: dict) -> set[int]:
  """Shards listed in the manifest whose file is in place with the listed size."""
  done = set()
  for key, shard in manifest["shards"].items():
    full = os.path.join(root, shard["file"])
    if os.path.isfile(full) and os.path.getsize(full) == shard["bytes"] or os.path.isdir(full):
      done.add(int(key))
  return done


def add_shard(manifest: dict, index: int, shard: dict) -> None:
  """Lists a committed shard; the totals and `complete` follow."""
  manifest["shards"][str(index)] = shard
  shards = manifest["shards"].values()
  manifest["counts"] = {
      "shards": len(manifest["shards"]),
      "records": sum(s["records"] for s in shards),
      "sources": sum(s["sources"] for s in shards),
      "skipped": sum(len(s["skipped"]) for s in shards)}
  manifest["complete"] = len(manifest["shards"]) == manifest["num_shards"]
  if manifest["complete"]:
    manifest["skipped"] = [x for k in sorted(manifest["shards"], key=int)
                           for x in manifest["shards"][k]["skipped"]]


def checkpoint_identity(vae: Any) -> dict:
  """The model, its fields and digests: of the variables as loaded, and of the checkpoint's
  files (from its jaxvae.json) and of the file it was ported from, when known."""
  meta = vae.metadata or {}
  h = hashlib.sha256()
  for name, value in sorted(checkpoint.flatten(vae.variables).items()):
    h.update(name.encode() + b"\0" + np.ascontiguousarray(value).tobytes())
  files = meta.get("digests")
  return {"model": vae.name, "model_fields": checkpoint.model_fields(vae.model),
          "variables_sha256": h.hexdigest(),
          "files_sha256": hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
          if files else None, "source_sha256": meta.get("source_sha256")}


def create(vae: Any, src: Any, settings: Any, sampling_options: Any, per_shard: int) -> dict:
  """A new run's manifest: `config` (compared on resume) and the layout, no shard yet."""
  config = {"checkpoint": checkpoint_identity(vae), "sources": src.identity(),
            **dataclasses.asdict(settings), "sampling": dataclasses.asdict(sampling_options)}
  del config["workers"], config["reader"]  # Speed only.
  return {
      "format_version": generated.FORMAT_VERSION, "complete": False, "config": config,
      "checkpoint_dir": vae.checkpoint_dir, "source": src.description,
      "record_encoding": generated.ENCODING,
      "keys": {"rule": keys.DESCRIPTION,
               "prng_impl": str(jax.random.key_impl(jax.random.key(0)))},
      "latent_dim": vae.latent_dim if settings.save_latents else 0,
      "attribute_names": list(celeba.ATTR_NAMES) if src.attributes is not None else None,
      "num_sources": len(src.ids), "sources_per_shard": per_shard,
      "num_shards": max(1, -(-len(src.ids) // per_shard)), "shards": {},
      "counts": {"shards": 0, "records": 0, "sources": 0, "skipped": 0}}
