"""What --mode=generate reads: a CelebA split or files, folders and globs, each with a stable id.

The id of a source does not depend on where it sits in the run: a CelebA image's file name
(`000001.jpg`; `test[12]` for tensorflow-datasets, which keeps no file names), or a file's path
relative to the input item it was found under (the folder, the glob's fixed leading folders, or
the file's own folder), with `/` separators. Images are read one at a time, on demand, preprocessed
as the other modes read them (jaxvae.data for files, jaxvae.celeba for CelebA).
"""

import collections
import functools
import glob
import hashlib
import os
from typing import Callable, NamedTuple, Sequence

import numpy as np
from PIL import Image

from jaxvae import celeba, data

_READ_ERRORS = (data.InputError, OSError, ValueError)


class Sources(NamedTuple):
  """An ordered list of source images; `load(i)` raises on an unreadable one."""
  kind: str  # "files" or "celeba"
  description: str
  ids: list[str]  # [N] stable ids
  load: Callable[[int], np.ndarray]  # index -> uint8 [64, 64, 3], the model's input x 255
  attributes: np.ndarray | None  # [N, 40] int8 in {-1, 1}, columns celeba.ATTR_NAMES

  def identity(self) -> dict:
    """What a resumed run must find unchanged: the kind, count and ids."""
    digest = hashlib.sha256("\n".join(self.ids).encode()).hexdigest()
    return {"kind": self.kind, "count": len(self.ids), "ids_sha256": digest}


def read(sources: Sources, index: int) -> tuple[np.ndarray | None, str]:
  """(image, "") or (None, why it is unreadable)."""
  try:
    return sources.load(index), ""
  except _READ_ERRORS as e:
    return None, str(e) or type(e).__name__


def _root(item: str) -> str:
  """The folder ids are relative to for one comma-separated input item."""
  if os.path.isdir(item):
    return item
  if glob.has_magic(item) and not os.path.isfile(item):
    parts = item.split(os.sep)
    return os.sep.join(parts[:next(i for i, p in enumerate(parts) if glob.has_magic(p))]) or "."
  return os.path.dirname(item) or "."


def _check_unique(ids: Sequence[str], names: Sequence[str]) -> None:
  counts = collections.Counter(ids)
  dup = [i for i, n in counts.items() if n > 1]
  if dup:
    where = [n for i, n in zip(ids, names) if i == dup[0]]
    raise data.InputError(
        f"{len(dup)} source id(s) occur twice: {', '.join(dup[:5])} (e.g. {' and '.join(where)}); "
        "ids are paths relative to each input item, so give a common parent folder or a glob "
        "instead of several folders that hold the same file names")


def _faces_in(name: str, box: tuple[int, int, int, int], align: str) -> int:
  """How many faces `name` yields under `align` (1 without detection); an unreadable file or a
  photo without a face counts 1, so that loading it fails in the run and is listed as skipped."""
  if align == "off" or (align == "auto" and name.startswith(data.BUNDLED_PREFIX)):
    return 1
  if align == "auto" and not name.startswith(data.BUNDLED_PREFIX):
    try:
      with Image.open(name) as image:  # The header only: aligned CelebA images pass as they are.
        if image.size == celeba.CELEBA_SIZE:
          return 1
    except (OSError, ValueError):
      return 1
  try:  # Detections are cached per file.
    return max(1, len(data.load_faces(name, box, align, as_uint8=True)))
  except _READ_ERRORS:
    return 1


def from_files(spec: str | Sequence[str], box: tuple[int, int, int, int],
               max_images: int = 0, align: str = "off") -> Sources:
  """Files, folders and globs (jaxvae.data.expand semantics) or bundled portraits; under `align`
  (jaxvae.data.load_faces) each face of a photo is a source, `<id>#1`, `<id>#2`, ... when a photo
  has several (found before the run, detections cached per file content)."""
  items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
  names, ids = [], []
  for item in items or [""]:
    found = data.expand(item)
    root = None if not item or item.startswith(data.BUNDLED_PREFIX) else _root(item)
    names += found
    ids += [f if root is None else os.path.relpath(f, root).replace(os.sep, "/") for f in found]
  faces = [(n, i, k, count) for n, i in zip(names, ids)
           for count in [_faces_in(n, box, align)] for k in range(count)]
  names = [n for n, _, _, _ in faces]
  ids = [i if count == 1 else f"{i}#{k + 1}" for _, i, k, count in faces]
  picks = [k for _, _, k, _ in faces]
  if max_images:
    names, ids, picks = names[:max_images], ids[:max_images], picks[:max_images]
  _check_unique(ids, names)
  what = ", ".join(items) if items else "the bundled portraits"
  return Sources("files", f"{len(ids)} {'faces' if align != 'off' else 'files'} of {what}", ids,
                 _FileLoader(names, picks, box, align), None)


class _FileLoader(NamedTuple):
  """Face `picks[i]` of file `names[i]` (picklable: worker processes read with it)."""
  names: list[str]
  picks: list[int]
  box: tuple[int, int, int, int]
  align: str

  def __call__(self, i: int) -> np.ndarray:
    if self.align == "off":
      return data.load_one(self.names[i], self.box, as_uint8=True)
    return data.load_faces(self.names[i], self.box, self.align, as_uint8=True)[self.picks[i]][1]


def from_celeba(ds: celeba.CelebA) -> Sources:
  """An opened CelebA split (jaxvae.celeba.open_celeba); images missing on disk are skipped."""
  return Sources("celeba", f"CelebA {ds.split} split, {ds.source} ({len(ds)} images)",
                 [str(n) for n in ds.names], functools.partial(ds.load_image, as_uint8=True),
                 np.asarray(ds.attributes, np.int8))


def open_celeba(root: str, split: str, box: tuple[int, int, int, int],
                max_images: int = 0) -> Sources:
  """CelebA (official layout, CSV variant or tfds) without checking every file up front."""
  return from_celeba(celeba.open_celeba(root, split, max_images or None, box,
                                        check_images=False, num_threads=1))
