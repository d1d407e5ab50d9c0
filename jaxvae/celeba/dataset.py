"""One split of CelebA in memory (names, splits, attributes), images decoded on demand in threads."""

import concurrent.futures
import dataclasses
import os
from typing import Callable, Iterator, NamedTuple, Sequence

import numpy as np
from PIL import Image

from jaxvae.celeba.attributes import ATTR_NAMES

CELEBA_SIZE = (178, 218)  # width, height of the aligned images
_SHOW = 5  # names listed in an error before "... and N more"


class Batch(NamedTuple):
  indices: np.ndarray  # [n] int, positions in the CelebA object
  images: np.ndarray  # [n, size, size, 3] float32 in [0, 1]


def _listing(items: Sequence[str]) -> str:
  shown = ", ".join(items[:_SHOW])
  return shown + (f" ... and {len(items) - _SHOW} more" if len(items) > _SHOW else "")


def preprocess(image: Image.Image | np.ndarray, box: tuple[int, int, int, int],
               size: int, as_uint8: bool = False) -> np.ndarray:
  """RGB image -> crop `box` -> PIL bilinear resize to `size` -> float32 [size, size, 3] in [0, 1]
  (its uint8 pixels with `as_uint8`).

  The resize works on uint8 pixels as the originals' torchvision pipelines did.
  """
  if isinstance(image, np.ndarray):
    image = Image.fromarray(image)
  if image.mode != "RGB":
    image = image.convert("RGB")
  pixels = np.asarray(image.crop(box).resize((size, size), Image.BILINEAR))
  return pixels if as_uint8 else np.asarray(pixels, np.float32) / 255.0


def _check_size(image: Image.Image, name: str) -> None:
  if image.size != CELEBA_SIZE:
    raise ValueError(f"{name} is {image.size[0]}x{image.size[1]}, not the aligned CelebA "
                     f"{CELEBA_SIZE[0]}x{CELEBA_SIZE[1]}: the crop boxes only fit img_align_celeba")


@dataclasses.dataclass(eq=False)
class CelebA:
  """One split of CelebA: names, splits and attributes in memory, images loaded on demand.

  Attributes:
    names: [N] str, the image file names (`000001.jpg`), or `split[i]` for tfds, which stores no
      file names and keeps its own (shuffled) order.
    splits: [N] int8 partition ids, 0 train, 1 validation, 2 test.
    attributes: [N, 40] int8 in {-1, 1}, columns in `attr_names` order (the official one).
    attr_names: the 40 attribute names.
    split: the requested split: train, validation, test or all.
    box: PIL crop box (left, top, right, bottom) on the 178x218 image.
    size: side of the square output images.
    source: where the data came from, for reports.
    raw_loader: index -> the full 178x218 RGB image (PIL image or uint8 array).
    num_threads: decoding threads for `load_batch`; 0 means one per core, at most 8.
  """
  names: np.ndarray
  splits: np.ndarray
  attributes: np.ndarray
  split: str
  box: tuple[int, int, int, int]
  size: int
  source: str
  raw_loader: Callable[[int], Image.Image | np.ndarray]
  num_threads: int = 0
  attr_names: tuple[str, ...] = ATTR_NAMES
  _pool: concurrent.futures.ThreadPoolExecutor | None = dataclasses.field(
      default=None, init=False, repr=False)

  def __len__(self) -> int:
    return len(self.names)

  @property
  def attributes_bool(self) -> np.ndarray:
    """[N, 40] bool, True where the attribute is present."""
    return self.attributes > 0

  def has(self, attr: str) -> np.ndarray:
    """[N] bool mask of the images labelled with `attr`."""
    if attr not in self.attr_names:
      raise ValueError(f"unknown CelebA attribute {attr!r}; known: {', '.join(self.attr_names)}")
    return self.attributes[:, self.attr_names.index(attr)] > 0

  def load_image(self, index: int, as_uint8: bool = False) -> np.ndarray:
    """Image `index` preprocessed: float32 [size, size, 3] in [0, 1] (uint8 with `as_uint8`)."""
    raw = self.raw_loader(int(index))
    if isinstance(raw, np.ndarray):
      raw = Image.fromarray(raw)
    _check_size(raw, f"image {self.names[index]} ({self.source})")
    return preprocess(raw, self.box, self.size, as_uint8)

  def load_batch(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
    """Images at `indices`: float32 [n, size, size, 3] in [0, 1], decoded in threads."""
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    if indices.size and (indices.min() < 0 or indices.max() >= len(self)):
      raise IndexError(f"indices must lie in [0, {len(self)}), got {indices.min()}.."
                       f"{indices.max()}")
    out = np.empty((len(indices), self.size, self.size, 3), np.float32)
    threads = self.num_threads or min(8, os.cpu_count() or 1)
    if threads <= 1 or len(indices) <= 1:
      for k, i in enumerate(indices):
        out[k] = self.load_image(i)
      return out
    if self._pool is None:
      self._pool = concurrent.futures.ThreadPoolExecutor(threads,
                                                         thread_name_prefix="celeba")
    for k, image in enumerate(self._pool.map(self.load_image, indices)):
      out[k] = image
    return out

  def batches(self, batch_size: int, indices: Sequence[int] | np.ndarray | None = None,
              prefetch: bool = True) -> Iterator[Batch]:
    """Consecutive batches over `indices` (default all); the last one may be smaller.

    With `prefetch` the next batch is decoded in the background while the caller works.
    """
    if batch_size < 1:
      raise ValueError(f"batch_size must be positive, got {batch_size}")
    order = np.arange(len(self)) if indices is None else np.asarray(indices, np.int64)
    chunks = [order[s:s + batch_size] for s in range(0, len(order), batch_size)]
    if not prefetch:
      for chunk in chunks:
        yield Batch(chunk, self.load_batch(chunk))
      return
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="celeba-prefetch") as ex:
      pending = ex.submit(self.load_batch, chunks[0]) if chunks else None
      for k, chunk in enumerate(chunks):
        images = pending.result()
        pending = ex.submit(self.load_batch, chunks[k + 1]) if k + 1 < len(chunks) else None
        yield Batch(chunk, images)

  def __getstate__(self) -> dict:  # Pickled for worker processes: without the thread pool.
    return {**self.__dict__, "_pool": None}

  def close(self) -> None:
    if self._pool is not None:
      self._pool.shutdown()
      self._pool = None


# Official and CSV annotation files.
