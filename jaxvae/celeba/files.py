"""CelebA from its official files (or the Kaggle CSV variant) under a root folder."""

import io
import os
from typing import NamedTuple, Sequence

import numpy as np
from PIL import Image

from jaxvae.celeba.annotations import read_attributes, read_partition
from jaxvae.celeba.dataset import CelebA, _listing

SPLITS: tuple[str, ...] = ("train", "validation", "test")  # partition ids 0, 1, 2
ALL = "all"
# Drive folders (Img/, Anno/, Eval/) and Kaggle's doubly nested image folder.
_IMAGE_DIRS = ("img_align_celeba/img_align_celeba", "img_align_celeba", "Img/img_align_celeba")
_PARTITION_FILES = ("list_eval_partition.txt", "Eval/list_eval_partition.txt",
                    "list_eval_partition.csv")
_ATTR_FILES = ("list_attr_celeba.txt", "Anno/list_attr_celeba.txt", "list_attr_celeba.csv")
_SHOW = 5  # names listed in an error before "... and N more"


def _check_split(split: str) -> None:
  if split != ALL and split not in SPLITS:
    raise ValueError(f"unknown CelebA split {split!r}; use one of {', '.join(SPLITS + (ALL,))}")


def _select(split: str, split_ids: np.ndarray) -> np.ndarray:
  _check_split(split)
  if split == ALL:
    return np.arange(len(split_ids))
  return np.nonzero(split_ids == SPLITS.index(split))[0]


def _find(root: str, candidates: Sequence[str], isdir: bool = False) -> str | None:
  for rel in candidates:
    path = os.path.join(root, rel)
    if os.path.isdir(path) if isdir else os.path.isfile(path):
      return path
  return None


def _open_files(root: str, split: str, max_count: int | None, box, size: int,
                check_images: bool, num_threads: int) -> CelebA:
  """The official layout (or its CSV variant) under `root`."""
  images_dir = _find(root, _IMAGE_DIRS, isdir=True)
  if images_dir is not None and images_dir.endswith("img_align_celeba/img_align_celeba"):
    if not any(f.endswith(".jpg") for f in os.listdir(images_dir)):
      images_dir = os.path.join(root, "img_align_celeba")
  partition_path = _find(root, _PARTITION_FILES)
  attr_path = _find(root, _ATTR_FILES)
  missing = [what for what, found in (("img_align_celeba/ (the aligned .jpg images)", images_dir),
                                      ("list_eval_partition.txt or .csv", partition_path),
                                      ("list_attr_celeba.txt or .csv", attr_path)) if not found]
  if missing:
    raise FileNotFoundError(
        f"no CelebA at {root}: missing {'; '.join(missing)}. Expected the official layout "
        "(img_align_celeba/000001.jpg..., list_eval_partition.txt, list_attr_celeba.txt; the "
        "Kaggle .csv files also work), or a prepared tensorflow-datasets celeb_a (a data dir "
        "holding celeb_a/<version>/dataset_info.json, or 'tfds:celeb_a'). jaxvae never "
        "downloads CelebA.")
  names, split_ids = read_partition(partition_path)
  chosen = _select(split, split_ids)
  if max_count is not None:
    chosen = chosen[:max_count]
  names = [names[i] for i in chosen]
  attr_names, attr_values = read_attributes(attr_path)
  row = {name: r for r, name in enumerate(attr_names)}
  absent = [name for name in names if name not in row]
  if absent:
    raise ValueError(f"{attr_path} has no attributes for {len(absent)} image(s) of "
                     f"{partition_path}: {_listing(absent)}")
  attributes = attr_values[[row[name] for name in names]] if names else attr_values[:0]
  names_arr = np.array(names, dtype=np.str_)
  if check_images:
    with os.scandir(images_dir) as it:
      present = {entry.name for entry in it}
    lost = [name for name in names if name not in present]
    if lost:
      raise FileNotFoundError(f"{len(lost)} image(s) of the {split} split are missing from "
                              f"{images_dir}: {_listing(lost)}")

  kinds = {p.rsplit(".", 1)[-1] for p in (partition_path, attr_path)}
  return CelebA(names=names_arr, splits=split_ids[chosen], attributes=attributes, split=split,
                box=tuple(box), size=size, raw_loader=_ImageLoader(images_dir, names_arr),
                num_threads=num_threads,
                source=f"CelebA files at {root} ({'/'.join(sorted(kinds))})")


class _ImageLoader(NamedTuple):
  """index -> the PIL image of file `names[index]` in `images_dir` (picklable)."""
  images_dir: str
  names: np.ndarray

  def __call__(self, i: int) -> Image.Image:
    path = os.path.join(self.images_dir, str(self.names[i]))
    try:
      with open(path, "rb") as f:
        image = Image.open(io.BytesIO(f.read()))
        image.load()
    except FileNotFoundError as e:
      raise FileNotFoundError(f"CelebA image {path} is missing") from e
    except OSError as e:
      raise ValueError(f"CelebA image {path} is unreadable: {e}") from e
    return image
