"""CelebA readers for the official files, their Kaggle CSV variant and a prepared tfds `celeb_a`.

open_celeba (below) picks the reader; dataset.py holds the CelebA object it returns,
annotations.py the annotation-file parsers, files.py and tfds.py the two sources,
attributes.py the attribute names and their caveats.
"""

import os

from jaxvae.celeba.annotations import read_attributes, read_partition
from jaxvae.celeba.attributes import ATTR_NAMES, ATTRIBUTE_NOTES, WEAK_EVIDENCE
from jaxvae.celeba.dataset import CELEBA_SIZE, Batch, CelebA, preprocess
from jaxvae.celeba.files import ALL, SPLITS, _open_files
from jaxvae.celeba.tfds import TFDS_NAME, _open_tfds

__all__ = ["ALL", "ATTR_NAMES", "ATTRIBUTE_NOTES", "Batch", "CELEBA_SIZE", "CelebA", "DEFAULT_BOX",
           "SPLITS", "TFDS_PREFIX", "WEAK_EVIDENCE", "open_celeba", "preprocess",
           "read_attributes", "read_partition"]

DEFAULT_BOX = (0, 30, 178, 208)  # Beta-VAE / DFC-VAE crop; see jaxvae.models.get_info(name)
TFDS_PREFIX = "tfds"


def open_celeba(source: str | os.PathLike, split: str = "test", max_count: int | None = None,
                box: tuple[int, int, int, int] = DEFAULT_BOX, size: int = 64, *,
                tfds_data_dir: str | os.PathLike | None = None, check_images: bool = True,
                num_threads: int = 0) -> CelebA:
  """Opens CelebA without downloading anything.

  Args:
    source: one of
      - a folder with the official files: `img_align_celeba/*.jpg`, `list_eval_partition.txt`
        and `list_attr_celeba.txt` (also their Kaggle `.csv` variants, Google Drive's
        `Img/ Anno/ Eval/` folders and Kaggle's nested `img_align_celeba/img_align_celeba/`);
      - a prepared tensorflow-datasets celeb_a in array_record format: its data dir (holding
        `celeb_a/<version>/dataset_info.json`) or that version folder itself;
      - `tfds` or `tfds:<name>` (e.g. `tfds:celeb_a:2.1.0`): by name in `tfds_data_dir`
        (default $TFDS_DATA_DIR or ~/tensorflow_datasets).
    split: train, validation, test or all.
    max_count: keep only the first `max_count` images of the split (file order; tfds order for
      tfds, which shuffles).
    box: PIL crop box on the 178x218 image: `jaxvae.models.get_info(name).celeba_box`.
    size: side of the square images `load_batch` returns.
    tfds_data_dir: data dir for `tfds:` sources.
    check_images: for the official layout, check at open that every selected image file exists.
    num_threads: image decoding threads (0: up to 8, one per core).

  Returns:
    A `CelebA` with names, split ids and attributes loaded, images loaded by `load_batch`.

  Raises:
    FileNotFoundError: no CelebA at `source`, missing images or an unprepared tfds dataset.
    ValueError: malformed annotation files (naming file and line), an unknown split, or a tfds
      dataset in a format that needs TensorFlow.
  """
  if max_count is not None and max_count < 0:
    raise ValueError(f"max_count must be >= 0, got {max_count}")
  left, top, right, bottom = box
  if not (0 <= left < right <= CELEBA_SIZE[0] and 0 <= top < bottom <= CELEBA_SIZE[1]):
    raise ValueError(f"box {tuple(box)} is not a (left, top, right, bottom) box inside the "
                     f"{CELEBA_SIZE[0]}x{CELEBA_SIZE[1]} aligned image")
  if size < 1:
    raise ValueError(f"size must be positive, got {size}")
  spec = os.fspath(source)
  if spec == TFDS_PREFIX or spec.startswith(TFDS_PREFIX + ":"):
    name = spec[len(TFDS_PREFIX) + 1:] or TFDS_NAME
    data_dir = os.fspath(tfds_data_dir) if tfds_data_dir is not None else None
    return _open_tfds(name, None, data_dir, split, max_count, box, size, num_threads)
  root = os.path.expanduser(spec)
  if not os.path.isdir(root):
    raise FileNotFoundError(f"CelebA root {root} does not exist or is not a folder")
  if os.path.isfile(os.path.join(root, "dataset_info.json")):
    return _open_tfds(None, root, None, split, max_count, box, size, num_threads)
  tfds_dir = os.path.join(root, TFDS_NAME)
  if os.path.isdir(tfds_dir) and any(
      os.path.isfile(os.path.join(tfds_dir, v, "dataset_info.json")) for v in os.listdir(tfds_dir)):
    return _open_tfds(TFDS_NAME, None, root, split, max_count, box, size, num_threads)
  return _open_files(root, split, max_count, box, size, check_images, num_threads)
