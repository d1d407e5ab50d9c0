"""CelebA readers for the official files, their Kaggle CSV variant and a prepared tfds `celeb_a`."""

import concurrent.futures
import dataclasses
import io
import itertools
import os
import warnings
from typing import Any, Callable, Iterator, Mapping, NamedTuple, Sequence

import numpy as np
from PIL import Image

ATTR_NAMES: tuple[str, ...] = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs",
    "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows",
    "Chubby", "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup",
    "High_Cheekbones", "Male", "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes", "No_Beard",
    "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks", "Sideburns",
    "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat",
    "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young")

SPLITS: tuple[str, ...] = ("train", "validation", "test")  # partition ids 0, 1, 2
ALL = "all"
CELEBA_SIZE = (178, 218)  # width, height of the aligned images
DEFAULT_BOX = (0, 30, 178, 208)  # Beta-VAE / DFC-VAE crop; see jaxvae.models.get_info(name)
TFDS_PREFIX = "tfds"
TFDS_NAME = "celeb_a"

# Caveats the bias report prints next to each attribute.
NOISY_LABEL = ("noisy label: nearly random on relabeling (2023 study); treat as weak evidence")
OCCLUSION = "occludes part of the face"
CONFOUNDER = "strong confounder: correlated with many other attributes"
ATTRIBUTE_NOTES: Mapping[str, str] = {
    "Pale_Skin": ("the only skin-tone label; 'not pale' does not mean dark skin, so CelebA cannot "
                  "measure a skin-tone gap"),
    "Eyeglasses": OCCLUSION + "; correlated with Male and age",
    "Wearing_Hat": OCCLUSION,
    "Bangs": OCCLUSION + " (forehead)",
    "5_o_Clock_Shadow": "facial hair; " + OCCLUSION,
    "Goatee": "facial hair; " + OCCLUSION,
    "Mustache": "facial hair; " + OCCLUSION,
    "Sideburns": "facial hair; " + OCCLUSION,
    "No_Beard": "facial hair (inverted); without it the face is partly occluded",
    "Male": CONFOUNDER,
    "Young": CONFOUNDER + " (age)",
    "Gray_Hair": CONFOUNDER + " (age)",
    "Bald": CONFOUNDER + " (age, Male)",
    "High_Cheekbones": NOISY_LABEL,
    "Pointy_Nose": NOISY_LABEL,
    "Oval_Face": NOISY_LABEL,
    "Attractive": "subjective label",
    "Blurry": "describes the photo, not the face",
}
WEAK_EVIDENCE: frozenset[str] = frozenset(
    name for name, note in ATTRIBUTE_NOTES.items() if note == NOISY_LABEL)

# Where each file of the official layout may sit under the root: flat (torchvision), the Google
# Drive folders (Img/, Anno/, Eval/) and Kaggle's doubly nested image folder.
_IMAGE_DIRS = ("img_align_celeba/img_align_celeba", "img_align_celeba", "Img/img_align_celeba")
_PARTITION_FILES = ("list_eval_partition.txt", "Eval/list_eval_partition.txt",
                    "list_eval_partition.csv")
_ATTR_FILES = ("list_attr_celeba.txt", "Anno/list_attr_celeba.txt", "list_attr_celeba.csv")
_SHOW = 5  # names listed in an error before "... and N more"


class Batch(NamedTuple):
  indices: np.ndarray  # [n] int, positions in the CelebA object
  images: np.ndarray  # [n, size, size, 3] float32 in [0, 1]


def _listing(items: Sequence[str]) -> str:
  shown = ", ".join(items[:_SHOW])
  return shown + (f" ... and {len(items) - _SHOW} more" if len(items) > _SHOW else "")


def preprocess(image: Image.Image | np.ndarray, box: tuple[int, int, int, int],
               size: int) -> np.ndarray:
  """RGB image -> crop `box` -> PIL bilinear resize to `size` -> float32 [size, size, 3] in [0, 1].

  The resize works on uint8 pixels as the originals' torchvision pipelines did.
  """
  if isinstance(image, np.ndarray):
    image = Image.fromarray(image)
  image = image.convert("RGB").crop(box).resize((size, size), Image.BILINEAR)
  return np.asarray(image, np.float32) / 255.0


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

  def load_image(self, index: int) -> np.ndarray:
    """Image `index` preprocessed: float32 [size, size, 3] in [0, 1]."""
    raw = self.raw_loader(int(index))
    if isinstance(raw, np.ndarray):
      raw = Image.fromarray(raw)
    _check_size(raw, f"image {self.names[index]} ({self.source})")
    return preprocess(raw, self.box, self.size)

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

  def close(self) -> None:
    if self._pool is not None:
      self._pool.shutdown()
      self._pool = None


# Official and CSV annotation files.


def _lines(path: str) -> list[tuple[int, str]]:
  """(1-based line number, line) for the non-blank lines; CRLF and LF alike."""
  try:
    with open(path, encoding="utf-8") as f:
      text = f.read()
  except UnicodeDecodeError as e:
    raise ValueError(f"{path} is not a text file: {e}") from e
  return [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def _to_int(rows: list[list[str]], lines: list[tuple[int, str]], path: str,
            allowed: tuple[int, ...], what: str) -> np.ndarray:
  """[len(rows), width] int64 table from string rows of equal width, all values in `allowed`.

  Parses everything in one numpy call; on a bad token it goes line by line to name the line.
  """
  choices = ", ".join(map(str, allowed[:-1])) + f" or {allowed[-1]}"
  width = len(rows[0]) if rows else 0
  try:
    with warnings.catch_warnings():
      warnings.simplefilter("error", DeprecationWarning)  # numpy's "could not be read to its end"
      flat = np.fromstring(" ".join(itertools.chain.from_iterable(rows)), np.int64, sep=" ")
    values = flat.reshape(len(rows), width) if flat.size == len(rows) * width else None
  except (DeprecationWarning, ValueError):
    values = None
  if values is not None and np.isin(values, allowed).all():
    return values
  parsed = []
  for row, (n, line) in zip(rows, lines):
    try:
      ints = [int(v) for v in row]
    except ValueError:
      ints = None
    if ints is None or any(v not in allowed for v in ints):
      raise ValueError(f"{path}:{n}: {what} must be {choices}; line is {line.strip()[:120]!r}")
    parsed.append(ints)
  return np.array(parsed, np.int64).reshape(len(rows), width)


def _check_unique(names: Sequence[str], path: str) -> None:
  if len(set(names)) != len(names):
    seen, dup = set(), []
    for name in names:
      if name in seen:
        dup.append(name)
      seen.add(name)
    raise ValueError(f"{path}: duplicate image names: {_listing(dup)}")


def read_partition(path: str) -> tuple[list[str], np.ndarray]:
  """`list_eval_partition.txt` (`000001.jpg 0`, no header) or `.csv` (`image_id,partition`).

  Returns the image names and their int8 partition ids (0 train, 1 validation, 2 test).
  """
  lines = _lines(path)
  csv = path.endswith(".csv")
  if csv:
    if not lines or [t.strip() for t in lines[0][1].split(",")] != ["image_id", "partition"]:
      got = lines[0][1].strip() if lines else "an empty file"
      raise ValueError(f"{path}:1: expected the header 'image_id,partition', got {got!r}")
    lines = lines[1:]
  rows = []
  for n, line in lines:
    tokens = [t.strip() for t in line.split(",")] if csv else line.split()
    if len(tokens) != 2:
      raise ValueError(f"{path}:{n}: expected an image name and a partition id (0, 1 or 2), "
                       f"got {line.strip()!r}")
    rows.append(tokens)
  names = [r[0] for r in rows]
  _check_unique(names, path)
  ids = _to_int([r[1:] for r in rows], lines, path, (0, 1, 2), "the partition id")
  return names, ids.reshape(-1).astype(np.int8)


def read_attributes(path: str) -> tuple[list[str], np.ndarray]:
  """`list_attr_celeba.txt` (count line, names line, rows of -1/1) or `.csv` (Kaggle).

  Returns the image names and their int8 [N, 40] attributes in {-1, 1}, columns in the official
  order (a file with the 40 names in another order is reordered).
  """
  lines = _lines(path)
  csv = path.endswith(".csv")
  if csv:
    if not lines:
      raise ValueError(f"{path}: empty file; expected the header 'image_id,<40 attribute names>'")
    header = [t.strip() for t in lines[0][1].split(",")]
    if header[0] != "image_id":
      raise ValueError(f"{path}:{lines[0][0]}: expected the header to start with 'image_id', "
                       f"got {lines[0][1].strip()[:60]!r}")
    columns, header_line, body, count = header[1:], lines[0][0], lines[1:], None
  else:
    if len(lines) < 2:
      raise ValueError(f"{path}: expected a count line and a line of 40 attribute names, "
                       f"the file has {len(lines)} non-blank line(s)")
    (count_line, count_text), (header_line, names_text) = lines[0], lines[1]
    if len(count_text.split()) != 1 or not count_text.strip().isdigit():
      raise ValueError(f"{path}:{count_line}: expected the image count (e.g. 202599), "
                       f"got {count_text.strip()[:60]!r}")
    count, columns, body = int(count_text), names_text.split(), lines[2:]
  unknown = [c for c in columns if c not in ATTR_NAMES]
  missing = [a for a in ATTR_NAMES if a not in columns]
  if unknown or missing or len(columns) != len(ATTR_NAMES):
    raise ValueError(
        f"{path}:{header_line}: expected the 40 CelebA attribute names, got {len(columns)} names"
        + (f"; unknown: {_listing(unknown)}" if unknown else "")
        + (f"; missing: {_listing(missing)}" if missing else "")
        + ("; duplicates" if not unknown and not missing else ""))
  rows = []
  for n, line in body:
    tokens = [t.strip() for t in line.split(",")] if csv else line.split()
    if len(tokens) != 1 + len(columns):
      raise ValueError(f"{path}:{n}: expected an image name and {len(columns)} values, "
                       f"got {len(tokens) - 1} values")
    rows.append(tokens)
  if count is not None and count != len(rows):
    raise ValueError(f"{path}:{lines[0][0]}: the count line says {count} images but the file "
                     f"has {len(rows)} rows")
  names = [r[0] for r in rows]
  _check_unique(names, path)
  values = _to_int([r[1:] for r in rows], body, path, (-1, 1), "attribute values")
  order = [columns.index(a) for a in ATTR_NAMES]
  return names, values.reshape(len(rows), len(columns))[:, order].astype(np.int8)


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

  def load(i: int) -> Image.Image:
    path = os.path.join(images_dir, str(names_arr[i]))
    try:
      with open(path, "rb") as f:
        image = Image.open(io.BytesIO(f.read()))
        image.load()
    except FileNotFoundError as e:
      raise FileNotFoundError(f"CelebA image {path} is missing") from e
    except OSError as e:
      raise ValueError(f"CelebA image {path} is unreadable: {e}") from e
    return image

  kinds = {p.rsplit(".", 1)[-1] for p in (partition_path, attr_path)}
  return CelebA(names=names_arr, splits=split_ids[chosen], attributes=attributes, split=split,
                box=tuple(box), size=size, raw_loader=load, num_threads=num_threads,
                source=f"CelebA files at {root} ({'/'.join(sorted(kinds))})")


# tensorflow-datasets.


def _tfds_module() -> Any:
  try:
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise ImportError("reading CelebA through tensorflow-datasets needs "
                      "`pip install tensorflow-datasets` (see requirements.txt), or point at "
                      "the official CelebA files instead") from e
  return tfds


def _tfds_failure(tfds: Any, where: str, builder_fn: Callable[[], Any],
                  error: Exception) -> Exception:
  """A clear error for a tfds celeb_a that cannot be read without TensorFlow or is absent."""
  try:
    builder = builder_fn()
    prepared, file_format, path = builder.is_prepared(), builder.info.file_format, builder.data_dir
  except Exception:  # pylint: disable=broad-except
    prepared, file_format, path = False, None, where
  official = ("or point at the official CelebA files (img_align_celeba/ + list_eval_partition.txt "
              "+ list_attr_celeba.txt)")
  if not prepared:
    return FileNotFoundError(
        f"tensorflow-datasets has no prepared celeb_a at {path}; jaxvae never downloads it. "
        "Prepare it where TensorFlow is installed with `tfds build celeb_a "
        "--file_format=array_record` (and pass its data dir), " + official)
  fmt = getattr(file_format, "value", file_format)
  if fmt != "array_record":
    return ValueError(
        f"celeb_a at {path} is prepared as {fmt}, which tensorflow-datasets reads only through "
        "TensorFlow (tf.data); jaxvae reads tfds through random-access data sources, which need "
        "array_record. Convert it once with TensorFlow installed (`pip install tensorflow`): "
        f"`tfds convert_format --dataset_version_dir={path} --out_file_format=array_record`, "
        + official)
  return RuntimeError(f"could not read celeb_a at {path} through tensorflow-datasets: {error}")


def _open_tfds(name: str | None, directory: str | None, data_dir: str | None, split: str,
               max_count: int | None, box, size: int, num_threads: int) -> CelebA:
  """A prepared tfds celeb_a: by name (in `data_dir`) or from its version `directory`."""
  _check_split(split)
  tfds = _tfds_module()
  splits = SPLITS if split == ALL else (split,)

  def builder_fn() -> Any:
    if directory is not None:
      return tfds.builder_from_directory(directory)
    return tfds.builder(name, data_dir=data_dir)

  def open_fn(s: str) -> Sequence[Any]:
    if directory is not None:
      return builder_fn().as_data_source(split=s)
    return tfds.data_source(name, split=s, data_dir=data_dir, download=False, try_gcs=False)

  where = directory or f"{name} in {data_dir or tfds.core.constants.DATA_DIR}"
  try:
    sources = [open_fn(s) for s in splits]
  except (NotImplementedError, FileNotFoundError, AssertionError, ValueError) as e:
    raise _tfds_failure(tfds, where, builder_fn, e) from e
  refs, split_ids, rows = [], [], []
  for s, source in zip(splits, sources):
    for i in range(len(source)):
      if max_count is not None and len(refs) >= max_count:
        break
      example = source[i]
      refs.append((source, i, f"{s}[{i}]"))
      split_ids.append(SPLITS.index(s))
      attrs = example["attributes"]
      absent = [a for a in ATTR_NAMES if a not in attrs]
      if absent:
        raise ValueError(f"tfds {where} split {s} example {i} lacks attributes {_listing(absent)}")
      rows.append([1 if bool(attrs[a]) else -1 for a in ATTR_NAMES])

  def load(i: int) -> np.ndarray:
    source, j, _ = refs[i]
    image = source[j]["image"]
    return np.asarray(image) if not isinstance(image, bytes) else Image.open(io.BytesIO(image))

  return CelebA(names=np.array([r[2] for r in refs], dtype=np.str_),
                splits=np.array(split_ids, np.int8),
                attributes=np.array(rows, np.int8).reshape(len(rows), len(ATTR_NAMES)),
                split=split, box=tuple(box), size=size, raw_loader=load,
                num_threads=num_threads, source=f"tensorflow-datasets {where}")


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
