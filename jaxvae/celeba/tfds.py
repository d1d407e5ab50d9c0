"""CelebA from a prepared tensorflow-datasets `celeb_a` in array_record format, without TensorFlow."""

import contextlib
import io
import shutil
import tempfile
from typing import Any, Callable, Iterator, NamedTuple, Sequence

import numpy as np
from PIL import Image

from jaxvae.celeba.attributes import ATTR_NAMES
from jaxvae.celeba.dataset import CelebA, _listing
from jaxvae.celeba.files import ALL, SPLITS, _check_split

TFDS_NAME = "celeb_a"


@contextlib.contextmanager
def contained_tempdirs() -> Iterator[None]:
  """Collects the temporary folders tfds makes into one, removed afterwards.

  tfds 4.9.10 leaves an empty `tempfile.mkdtemp("tfds")` behind for every builder of a dataset that
  is not prepared (DatasetInfo.initialize_from_bucket, with GCS disabled).
  """
  previous = tempfile.tempdir
  box = tempfile.mkdtemp(prefix="jaxvae-tfds-")
  tempfile.tempdir = box
  try:
    yield
  finally:
    tempfile.tempdir = previous
    shutil.rmtree(box, ignore_errors=True)


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


def _parse(record: bytes | dict) -> dict[str, Any]:
  """A celeb_a record -> {"image": its JPEG bytes, "attributes": {name: bool}}.

  Records are read as their serialized tf.train.Example (tfds' own numpy parser takes ~1.4 ms per
  example, so opening all of CelebA took minutes): the stock builder's features are `image` (the
  encoded JPEG) and `attributes/<name>` (bools stored as int64). tfds' test mocks hand over
  decoded examples, passed through as they are.
  """
  if isinstance(record, dict):
    return record
  from tensorflow_datasets.proto import tf_example_pb2  # pylint: disable=import-outside-toplevel
  features = tf_example_pb2.Example.FromString(record).features.feature
  attrs = {a: bool(features[f"attributes/{a}"].int64_list.value[0]) for a in ATTR_NAMES
           if f"attributes/{a}" in features}
  image = features["image"].bytes_list.value if "image" in features else []
  return {"image": image[0] if image else None, "attributes": attrs}


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

  raw = tfds.decode.DeserializeMethod.RAW_BYTES  # Parsed here (_parse): 38 us, not 1.4 ms.

  def open_fn(s: str) -> Sequence[Any]:
    if directory is not None:
      return builder_fn().as_data_source(split=s, deserialize_method=raw)
    return tfds.data_source(name, split=s, data_dir=data_dir, download=False, try_gcs=False,
                            deserialize_method=raw)

  where = directory or f"{name} in {data_dir or tfds.core.constants.DATA_DIR}"
  with contained_tempdirs():
    try:
      sources = [open_fn(s) for s in splits]
    except (NotImplementedError, FileNotFoundError, AssertionError, ValueError) as e:
      raise _tfds_failure(tfds, where, builder_fn, e) from e
  names, which, examples, rows = [], [], [], []
  for k, (s, source) in enumerate(zip(splits, sources)):
    for i in range(len(source)):
      if max_count is not None and len(names) >= max_count:
        break
      attrs = _parse(source[i])["attributes"]
      absent = [a for a in ATTR_NAMES if a not in attrs]
      if absent:
        raise ValueError(f"tfds {where} split {s} example {i} lacks attributes {_listing(absent)}")
      names.append(f"{s}[{i}]")
      which.append(k)
      examples.append(i)
      rows.append([1 if bool(attrs[a]) else -1 for a in ATTR_NAMES])
  return CelebA(names=np.array(names, dtype=np.str_),
                splits=np.array([SPLITS.index(splits[k]) for k in which], np.int8),
                attributes=np.array(rows, np.int8).reshape(len(rows), len(ATTR_NAMES)),
                split=split, box=tuple(box), size=size,
                raw_loader=_Loader(sources, np.array(which, np.int8), np.array(examples)),
                num_threads=num_threads, source=f"tensorflow-datasets {where}")


class _Loader(NamedTuple):
  """index -> the image of example `examples[index]` of `sources[which[index]]` (picklable, as
  tfds data sources are: reading processes use it)."""
  sources: Sequence[Any]  # a tfds data source per split
  which: np.ndarray  # [N] int8
  examples: np.ndarray  # [N] int

  def __call__(self, i: int) -> Image.Image | np.ndarray:
    image = _parse(self.sources[self.which[i]][int(self.examples[i])])["image"]
    return np.asarray(image) if not isinstance(image, bytes) else Image.open(io.BytesIO(image))
