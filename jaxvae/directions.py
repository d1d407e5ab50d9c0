"""CelebA attribute vectors: mean posterior mean of images with an attribute minus those without.

As the DFC-VAE paper (Hou et al. 2017, section 4.3) builds its latent arithmetic: for attribute
a, d_a = mean_{x: a(x)} mu(x) - mean_{x: not a(x)} mu(x), over a CelebA split. One streaming pass
over the split computes all 40 directions at once (sums of mu per attribute and its complement,
[40, L] each), so memory does not grow with the split. The result is cached per (checkpoint
files, CelebA source, split, image count) under <cache>/directions (jaxvae.paths): later edits
with any attribute of the same checkpoint and data read it back.
"""

import hashlib
import json
import os
from typing import Callable, NamedTuple

import numpy as np

from jaxvae import celeba, checkpoint, models, outputs, paths

Log = Callable[[str], None]


class Directions(NamedTuple):
  names: tuple[str, ...]  # the 40 attribute names
  vectors: np.ndarray  # [40, L] float32: mean mu with the attribute - mean mu without
  n_with: np.ndarray  # [40] images with each attribute
  n_images: int

  def get(self, attribute: str) -> np.ndarray:
    if attribute not in self.names:
      raise ValueError(f"unknown CelebA attribute {attribute!r}; one of {', '.join(self.names)}")
    i = self.names.index(attribute)
    if self.n_with[i] == 0 or self.n_with[i] == self.n_images:
      raise ValueError(f"no image {'has' if self.n_with[i] == 0 else 'lacks'} {attribute} in the "
                       f"{self.n_images} images used: its direction is undefined")
    return self.vectors[i]


def _cache_path(vae, source: str, split: str, max_images: int) -> str:
  """One file per (checkpoint content, data, split, count)."""
  digests = vae.metadata.get("digests") or checkpoint.file_digests(
      os.path.join(vae.checkpoint_dir, checkpoint.VARIABLES_DIR))
  key = json.dumps({"weights": digests, "model_config": vae.metadata.get("model_config"),
                    "source": os.path.abspath(source) if os.path.exists(source) else source,
                    "split": split, "max_images": max_images}, sort_keys=True)
  return paths.cache_dir("directions", hashlib.sha256(key.encode()).hexdigest()[:32] + ".npz")


def compute(vae, source: str, split: str, max_images: int, batch_size: int = 256,
            log: Log = lambda s: None) -> Directions:
  """All 40 attribute directions of `vae` over a CelebA split, in one streaming pass."""
  ds = celeba.open_celeba(source, split, max_images or None, models.get_info(vae.name).celeba_box)
  sums = np.zeros((2, len(ds.attr_names), vae.latent_dim), np.float64)  # [without, with]
  n_with = np.zeros(len(ds.attr_names), np.int64)
  for done, batch in enumerate(ds.batches(batch_size)):
    mean, _ = vae.encode(batch.images)
    has = ds.attributes_bool[batch.indices].astype(np.float64)  # [B, 40]
    mu = np.asarray(mean, np.float64)
    sums[1] += has.T @ mu
    sums[0] += (1.0 - has).T @ mu
    n_with += has.sum(0).astype(np.int64)
    if (done + 1) % 20 == 0:
      log(f"  attribute vectors: {min((done + 1) * batch_size, len(ds))}/{len(ds)} images")
  ds.close()
  n = len(ds)
  with np.errstate(invalid="ignore", divide="ignore"):
    vectors = sums[1] / n_with[:, None] - sums[0] / (n - n_with)[:, None]
  return Directions(tuple(ds.attr_names), vectors.astype(np.float32), n_with, n)


def load_or_compute(vae, source: str, split: str, max_images: int,
                    log: Log = lambda s: None) -> Directions:
  """`compute`, once per checkpoint and data: later calls read the cached file."""
  path = _cache_path(vae, source, split, max_images)
  if os.path.exists(path):
    with np.load(path) as f:
      return Directions(tuple(f["names"]), f["vectors"], f["n_with"], int(f["n_images"]))
  log(f"computing the 40 CelebA attribute vectors over the {split} split of {source} (once; "
      f"cached in {path})")
  found = compute(vae, source, split, max_images, log=log)
  outputs.write_npz(path, names=np.array(found.names), vectors=found.vectors,
                    n_with=found.n_with, n_images=np.array(found.n_images))
  return found
