"""Training data: sources, a deterministic index stream, flips, balanced sampling, prefetch.

The order is a pure function of (seed, step): the stream is the concatenation of per-epoch
orders, epoch e drawn by numpy's Generator seeded with (seed, e); batch s is stream positions
[s B, (s + 1) B). A run restarted at step s therefore reads exactly what an uninterrupted run
reads, with nothing but the step to checkpoint. Images are decoded on demand in threads (a few
batches ahead), never the whole dataset; small file sets keep their decoded images in a bounded
cache. With several processes, each loads its contiguous share of every global batch.
"""

import collections
import concurrent.futures
import os
import threading
from typing import Iterator, NamedTuple

import numpy as np

from jaxvae import celeba, data as image_data

# Files or folders whose presence marks a CelebA root (official, Kaggle CSV or prepared tfds).
_CELEBA_MARKERS = ("list_eval_partition.txt", "list_eval_partition.csv",
                   "Eval/list_eval_partition.txt", "dataset_info.json", celeba.TFDS_NAME)
_CACHE_IMAGES = 4096  # decoded 64x64 images kept for file sources (about 200 MB)


class Source:
  """Random access to preprocessed [64, 64, 3] float32 images in [0, 1]."""
  description: str = ""

  def __len__(self) -> int:
    raise NotImplementedError

  def load(self, indices: np.ndarray) -> np.ndarray:
    raise NotImplementedError

  def groups(self, attribute: str) -> np.ndarray:
    raise ValueError(f"balance_attribute={attribute!r} needs CelebA attributes; "
                     f"{self.description} has none")


class FileSource(Source):
  """Image files, folders, globs and bundled: names (jaxvae.data.expand / load_one)."""

  def __init__(self, spec: str, box: tuple[int, int, int, int], max_images: int = 0,
               num_threads: int = 0):
    self.names = image_data.expand(spec)
    if max_images:
      self.names = self.names[:max_images]
    self.box = box
    self.description = f"{len(self.names)} image file(s) from {spec!r}"
    self._cache: collections.OrderedDict = collections.OrderedDict()
    self._lock = threading.Lock()
    self._pool = concurrent.futures.ThreadPoolExecutor(num_threads or min(8, os.cpu_count() or 1))

  def __len__(self) -> int:
    return len(self.names)

  def _one(self, i: int) -> np.ndarray:
    with self._lock:
      if i in self._cache:
        self._cache.move_to_end(i)
        return self._cache[i]
    try:
      image = image_data.load_one(self.names[i], self.box)
    except (image_data.InputError, OSError, ValueError) as e:
      raise image_data.InputError(f"training image {self.names[i]} is unreadable: {e}") from e
    with self._lock:
      self._cache[i] = image
      while len(self._cache) > _CACHE_IMAGES:
        self._cache.popitem(last=False)
    return image

  def load(self, indices: np.ndarray) -> np.ndarray:
    return np.stack(list(self._pool.map(self._one, (int(i) for i in indices))))


class CelebASource(Source):
  """One split of CelebA through jaxvae.celeba.open_celeba."""

  def __init__(self, spec: str, split: str, box, max_images: int = 0, num_threads: int = 0):
    self.celeba = celeba.open_celeba(spec, split=split, max_count=max_images or None, box=box,
                                     num_threads=num_threads)
    self.description = f"CelebA {split} ({len(self.celeba)} images, {self.celeba.source})"

  def __len__(self) -> int:
    return len(self.celeba)

  def load(self, indices: np.ndarray) -> np.ndarray:
    return self.celeba.load_batch(indices)

  def groups(self, attribute: str) -> np.ndarray:
    return self.celeba.has(attribute).astype(np.int64)


def is_celeba(spec: str) -> bool:
  spec = spec.strip()
  if spec == celeba.TFDS_PREFIX or spec.startswith(celeba.TFDS_PREFIX + ":"):
    return True
  return os.path.isdir(spec) and any(os.path.exists(os.path.join(spec, m))
                                     for m in _CELEBA_MARKERS)


def open_source(spec: str, split: str, box, max_images: int = 0, num_threads: int = 0) -> Source:
  """CelebA (its `split`) when `spec` names a CelebA root or tfds, else image files."""
  if is_celeba(spec):
    return CelebASource(spec, split, box, max_images, num_threads)
  return FileSource(spec, box, max_images, num_threads)


class Sampler:
  """Global batch indices and flip flags as a pure function of (seed, step)."""

  def __init__(self, size: int, batch_size: int, seed: int, shuffle: bool = True,
               flip: bool = False, groups: np.ndarray | None = None):
    if size < 1:
      raise ValueError("the training data holds no image")
    self.size, self.batch_size, self.seed = size, batch_size, seed
    self.shuffle, self.flip = shuffle, flip
    self.weights = None
    if groups is not None:
      values, counts = np.unique(groups, return_counts=True)
      if len(values) < 2:
        raise ValueError(f"balance_attribute: all {size} training images fall in one group")
      per_group = dict(zip(values.tolist(), counts.tolist()))
      self.weights = np.array([1.0 / (len(values) * per_group[g]) for g in groups.tolist()])
      self.weights /= self.weights.sum()
    self._epochs: collections.OrderedDict = collections.OrderedDict()

  def epoch(self, e: int) -> tuple[np.ndarray, np.ndarray]:
    """(order [N], flips [N]) of epoch e."""
    if e not in self._epochs:
      rng = np.random.default_rng([self.seed, e])
      if self.weights is not None:  # Balanced: each group drawn with equal probability.
        order = rng.choice(self.size, self.size, replace=True, p=self.weights)
      elif self.shuffle:
        order = rng.permutation(self.size)
      else:
        order = np.arange(self.size)
      flips = rng.random(self.size) < 0.5 if self.flip else np.zeros(self.size, bool)
      self._epochs[e] = (order, flips)
      while len(self._epochs) > 2:
        self._epochs.popitem(last=False)
    return self._epochs[e]

  def batch(self, step: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices [B], flips [B]) of global batch `step`."""
    positions = step * self.batch_size + np.arange(self.batch_size)
    indices, flips = np.empty(self.batch_size, np.int64), np.empty(self.batch_size, bool)
    for e in np.unique(positions // self.size):
      sel = positions // self.size == e
      order, flip = self.epoch(int(e))
      indices[sel], flips[sel] = order[positions[sel] % self.size], flip[positions[sel] % self.size]
    return indices, flips

  def steps_per_epoch(self) -> int:
    return max(1, self.size // self.batch_size)


class Batch(NamedTuple):
  step: int
  images: np.ndarray  # [B / processes, 64, 64, 3] float32 in [0, 1], this process's share


def load_batch(source: Source, sampler: Sampler, step: int, process_index: int = 0,
               process_count: int = 1) -> Batch:
  indices, flips = sampler.batch(step)
  share = sampler.batch_size // process_count
  sl = slice(process_index * share, (process_index + 1) * share)
  images = source.load(indices[sl])
  images[flips[sl]] = images[flips[sl], :, ::-1]
  return Batch(step, images)


def batches(source: Source, sampler: Sampler, start: int, stop: int, prefetch: int = 2,
            process_index: int = 0, process_count: int = 1) -> Iterator[Batch]:
  """Batches start..stop-1, `prefetch` of them decoded ahead in a background thread."""
  with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="train-data") as ex:
    pending = collections.deque()
    nxt = start
    while nxt < stop or pending:
      while nxt < stop and len(pending) < prefetch:
        pending.append(ex.submit(load_batch, source, sampler, nxt, process_index, process_count))
        nxt += 1
      yield pending.popleft().result()
