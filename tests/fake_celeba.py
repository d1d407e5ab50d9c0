"""Writes small fake CelebA trees in exactly the official file formats, for tests."""

import dataclasses
import io
import os
import zipfile
from typing import Any, Sequence
from unittest import mock

import numpy as np
from PIL import Image

from jaxvae import celeba
from jaxvae.celeba import tfds as tfds_source

LANDMARK_NAMES = ("lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x "
                  "leftmouth_y rightmouth_x rightmouth_y").split()


@dataclasses.dataclass
class FakeCelebA:
  root: str
  names: list[str]
  splits: np.ndarray  # [N] int8 partition ids
  attributes: np.ndarray  # [N, 40] int8 in {-1, 1}
  pixels: dict[str, np.ndarray]  # name -> [218, 178, 3] uint8 as PIL decodes the written JPEG

  def index(self, split: str) -> np.ndarray:
    """Positions of `split` in file order."""
    if split == celeba.ALL:
      return np.arange(len(self.names))
    return np.nonzero(self.splits == celeba.SPLITS.index(split))[0]


def _face_like(rng: np.random.Generator) -> np.ndarray:
  """A smooth random 218x178 RGB image (compresses like a photo, unlike noise)."""
  coarse = Image.fromarray(rng.integers(0, 256, (6, 5, 3), dtype=np.uint8))
  smooth = np.asarray(coarse.resize(celeba.CELEBA_SIZE, Image.BICUBIC), np.int16)
  return np.clip(smooth + rng.integers(-12, 13, smooth.shape), 0, 255).astype(np.uint8)


def _write(path: str, lines: Sequence[str], newline: str) -> None:
  with open(path, "w", newline="", encoding="utf-8") as f:
    f.write("".join(line + newline for line in lines))


def attr_row_txt(name: str, values: Sequence[int]) -> str:
  """A row as the official file writes it: first value unpadded, the rest as ' %2d'."""
  return f"{name} {values[0]}" + "".join(f" {v:2d}" for v in values[1:])


def write_fake_celeba(root: str, n: int = 12, seed: int = 0, txt: bool = True,
                      csv: bool = False, tfds_extras: bool = False) -> FakeCelebA:
  """Writes `n` JPEGs and the annotation files under `root` (created).

  Splits follow the official contiguous layout: the first 60% train, then 20% validation, then
  test. `txt` writes the official CRLF .txt files, `csv` the Kaggle .csv ones, `tfds_extras` the
  landmark and identity files that the tfds builder also reads.
  """
  rng = np.random.default_rng(seed)
  images_dir = os.path.join(root, "img_align_celeba")
  os.makedirs(images_dir, exist_ok=True)
  names = [f"{i:06d}.jpg" for i in range(1, n + 1)]
  n_train, n_val = int(0.6 * n), int(0.2 * n)
  splits = np.array([0] * n_train + [1] * n_val + [2] * (n - n_train - n_val), np.int8)
  attributes = rng.choice(np.array([-1, 1], np.int8), size=(n, len(celeba.ATTR_NAMES)))
  pixels = {}
  for name in names:
    path = os.path.join(images_dir, name)
    Image.fromarray(_face_like(rng)).save(path, "JPEG", quality=90)
    with Image.open(path) as image:
      pixels[name] = np.asarray(image.convert("RGB"))
  if txt:
    _write(os.path.join(root, "list_eval_partition.txt"),
           [f"{name} {s}" for name, s in zip(names, splits)], "\r\n")
    _write(os.path.join(root, "list_attr_celeba.txt"),
           [str(n), " ".join(celeba.ATTR_NAMES) + " "]
           + [attr_row_txt(name, row) for name, row in zip(names, attributes)], "\r\n")
  if csv:
    _write(os.path.join(root, "list_eval_partition.csv"),
           ["image_id,partition"] + [f"{name},{s}" for name, s in zip(names, splits)], "\n")
    _write(os.path.join(root, "list_attr_celeba.csv"),
           ["image_id," + ",".join(celeba.ATTR_NAMES)]
           + [name + "," + ",".join(str(v) for v in row) for name, row in zip(names, attributes)],
           "\n")
  if tfds_extras:
    _write(os.path.join(root, "list_landmarks_align_celeba.txt"),
           [str(n), " ".join(LANDMARK_NAMES)]
           + [name + "".join(f" {v:4d}" for v in rng.integers(60, 160, 10)) for name in names],
           "\r\n")
    _write(os.path.join(root, "identity_CelebA.txt"),
           [f"{name} {k % 3 + 1}" for k, name in enumerate(names)], "\r\n")
  return FakeCelebA(root, names, splits, attributes, pixels)


def tfds_example(fake: FakeCelebA, i: int) -> dict[str, Any]:
  """Example `i` as a tfds celeb_a data source returns it (decoded)."""
  return {
      "image": fake.pixels[fake.names[i]],
      "attributes": {a: np.bool_(v > 0) for a, v in zip(celeba.ATTR_NAMES, fake.attributes[i])},
      "landmarks": {k: np.int64(0) for k in LANDMARK_NAMES},
      "identity": {"Identity_No": np.int64(0)},
  }


def mock_data_source_fn(fake: FakeCelebA):
  """An `as_data_source_fn` for `tfds.testing.mock_data` serving `fake` in file order."""

  def as_data_source(builder, split, decoders=None, deserialize_method=None, **kwargs):
    del builder, decoders, deserialize_method, kwargs
    return [tfds_example(fake, i) for i in fake.index(str(split))]

  return as_data_source


def prepare_tfds(fake: FakeCelebA, data_dir: str) -> str:
  """Prepares the stock tfds celeb_a builder from `fake` (array_record, no TensorFlow).

  Only the download manager is replaced: `download` returns the local files and `iter_archive`
  reads the zip with zipfile (tfds' own uses tf.io.gfile). Returns the version folder.
  """
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

  archive = os.path.join(fake.root, "img_align_celeba.zip")
  with zipfile.ZipFile(archive, "w") as z:
    for name in fake.names:
      z.write(os.path.join(fake.root, "img_align_celeba", name), f"img_align_celeba/{name}")
  files = {
      "img_align_celeba": archive,
      "list_eval_partition": os.path.join(fake.root, "list_eval_partition.txt"),
      "list_attr_celeba": os.path.join(fake.root, "list_attr_celeba.txt"),
      "landmarks_celeba": os.path.join(fake.root, "list_landmarks_align_celeba.txt"),
      "identity_celeba": os.path.join(fake.root, "identity_CelebA.txt"),
  }

  def iter_archive(self, path):
    del self
    with zipfile.ZipFile(path) as z:
      for member in z.namelist():
        yield member, io.BytesIO(z.read(member))

  manager = tfds.download.DownloadManager
  with tfds_source.contained_tempdirs(), \
      mock.patch.object(manager, "download", lambda self, urls: files), \
      mock.patch.object(manager, "iter_archive", iter_archive):
    builder = tfds.builder("celeb_a", data_dir=data_dir, file_format="array_record")
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  return os.fspath(builder.data_dir)
