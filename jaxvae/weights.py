"""Ported weights by name: a checkpoint directory, or a published name ported once into the cache.

Published names (VAE checkpoints such as `betavae-l200`, and auxiliary networks such as the FID
Inception-v3) are converted by the `port` tool the first time they are asked for, into
`<cache>/checkpoints/<name>` (jaxvae.paths); only that first time imports `port` (and torch or
Keras behind it). Later runs read the Orbax checkpoint and need neither.
"""

import os
from typing import Any, Callable

from jaxvae import checkpoint, paths

Log = Callable[[str], None]


def cached_dir(name: str) -> str:
  return paths.cache_dir("checkpoints", name)


def _is_current(ckpt_dir: str) -> bool:
  """A complete cached port with file digests (older cache entries are ported again)."""
  try:
    return "digests" in checkpoint.read_metadata(ckpt_dir, ())
  except checkpoint.CheckpointError:
    return False


def ensure_ported(spec: str, log: Log = lambda s: None) -> str:
  """An Orbax checkpoint directory for `spec`: the directory itself, or a published name's port.

  A published name is fetched (download cache, then $JAXVAE_MIRROR, then its URL; sha256
  checked), verified against its original framework and ported once; a cached port written
  before checkpoints carried digests is ported again.
  """
  if os.path.isdir(spec):
    return spec
  out_dir = cached_dir(spec)
  if _is_current(out_dir):
    return out_dir
  from port import api  # pylint: disable=import-outside-toplevel  (torch/Keras only to port)
  return api.port_published(spec, out_dir, log=log)


def load_aux(spec: str, kind: str, abstract: Any, log: Log = lambda s: None) -> Any:
  """The variables of an auxiliary network (`kind`, e.g. "inception") named by `spec`.

  `spec` is a published name or a directory written by `python -m port --model=<kind>`;
  `abstract` is the network's variables as ShapeDtypeStructs.
  """
  ckpt_dir = ensure_ported(spec, log)
  metadata = checkpoint.read_metadata(ckpt_dir, ("kind",))
  if metadata["kind"] != kind:
    raise checkpoint.CheckpointError(f"{ckpt_dir} holds {metadata['kind']!r} weights, not "
                                     f"{kind!r}")
  return checkpoint.load_tree(ckpt_dir, abstract, metadata)
