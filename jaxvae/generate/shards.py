"""Shard writers: one shard's records into a temporary file or folder, then committed atomically.

A shard is written under a temporary name (`.tmp-<name>-<pid>`), flushed to disk (fsync), and
renamed to its final name; the manifest update that follows is what marks it done
(jaxvae.generate.manifest). `array_record`: one ArrayRecord file, one record per image in the
encoding of jaxvae.generated, sha256 of the file. `png`: a folder of `<id>_<k>.png` files,
`index.csv` and optionally `latents.npy`; its sha256 is that of the concatenated
(name, NUL, sha256 of the file) of index.csv, the PNGs in index order and latents.npy.
"""

import csv
import hashlib
import io
import os
import shutil
from typing import Any, NamedTuple, Sequence

import numpy as np

from jaxvae import celeba, generated, outputs

# One record per chunk (group_size:1) keeps random access cheap for readers; the images are
# stored uncompressed ("raw" encoding) or as PNG. One writer thread (max_parallelism:1): as cheap
# as a plain file write per record (~8 us of CPU for 12.5 kB, measured), no thread pool.
ARRAY_RECORD_OPTIONS = "group_size:1,uncompressed,max_parallelism:1"
FORMATS = ("array_record", "png")
IMAGE_ENCODINGS = ("raw", "png")


class Layout(NamedTuple):
  """What each record holds."""
  format: str  # FORMATS
  image_encoding: str  # IMAGE_ENCODINGS (array_record only)
  latent_dim: int  # 0 = no latents saved
  attributes: bool  # CelebA attributes known


class Shard(NamedTuple):
  """A committed shard, as the manifest lists it."""
  file: str  # name in the output folder
  records: int
  sources: int  # readable sources written
  skipped: list  # [{"source": id, "reason": str}]
  sha256: str
  bytes: int


def name(index: int, count: int, fmt: str) -> str:
  base = f"shard-{index:05d}-of-{count:05d}"
  return base + ".array_record" if fmt == "array_record" else base


def temp_prefix(shard_name: str) -> str:
  return f".tmp-{shard_name}-"


def encode_png(image: np.ndarray) -> bytes:
  """uint8 [H, W, 3] RGB -> PNG bytes (OpenCV, default compression)."""
  import cv2  # pylint: disable=import-outside-toplevel
  ok, buf = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
  if not ok:
    raise RuntimeError("PNG encoding failed")
  return buf.tobytes()


def _fsync(path: str, directory: bool = False) -> None:
  fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


class _Writer:
  """Shared bookkeeping of both shard formats."""

  def __init__(self, root: str, shard_name: str, layout: Layout):
    self.root, self.name, self.layout = root, shard_name, layout
    self.tmp = os.path.join(root, temp_prefix(shard_name) + str(os.getpid()))
    self.records, self.sources, self.skipped = 0, 0, []

  def skip(self, source_id: str, reason: str) -> None:
    self.skipped.append({"source": source_id, "reason": reason})

  def _done(self, digest: str, size: int) -> Shard:
    os.replace(self.tmp, os.path.join(self.root, self.name))
    _fsync(self.root, directory=True)
    return Shard(self.name, self.records, self.sources, self.skipped, digest, size)


class ArrayRecordShard(_Writer):
  """Records in the JVR1 encoding (jaxvae.generated) in one ArrayRecord file."""

  def __init__(self, root: str, shard_name: str, layout: Layout):
    super().__init__(root, shard_name, layout)
    from array_record.python import array_record_module  # pylint: disable=import-outside-toplevel
    self.writer = array_record_module.ArrayRecordWriter(self.tmp, ARRAY_RECORD_OPTIONS)
    fields = [("image", generated.RAW, (64, 64, 3))]
    if layout.latent_dim:
      fields += [(f, "<f4", (layout.latent_dim,)) for f in generated.LATENTS]
    if layout.attributes:
      fields += [("attributes", "|i1", (len(celeba.ATTR_NAMES),))]
    self.fields = generated.fields_json(fields)
    rest = generated.fields_json(fields[1:])[1:]  # the fields after the image, and "]"
    self.png_fields = '[["image","png",[64,64,3],{}]' + ("," + rest if len(fields) > 1 else "]")

  def add(self, source_id: str, images: np.ndarray, latents: Sequence[np.ndarray] | None,
          attributes: np.ndarray | None) -> None:
    """All variations of one source: images [K, 64, 64, 3] uint8, latents 3 x [K, L] float32."""
    extra = [attributes.tobytes()] if attributes is not None else []
    for k in range(images.shape[0]):
      lat = [a[k].tobytes() for a in latents] if latents is not None else []
      if self.layout.image_encoding == "png":
        png = encode_png(images[k])
        record = generated.encode_record(source_id, k, self.png_fields.format(len(png)),
                                         [png, *lat, *extra])
      else:
        record = generated.encode_record(source_id, k, self.fields,
                                         [memoryview(images[k]).cast("B"), *lat, *extra])
      self.writer.write(record)
    self.records += images.shape[0]
    self.sources += 1

  def commit(self) -> Shard:
    self.writer.close()
    _fsync(self.tmp)
    return self._done(outputs.sha256_file(self.tmp), os.path.getsize(self.tmp))

  def abort(self) -> None:
    self.writer.close()
    if os.path.exists(self.tmp):
      os.remove(self.tmp)


class PngShard(_Writer):
  """A folder of PNG files with index.csv (and latents.npy)."""

  def __init__(self, root: str, shard_name: str, layout: Layout):
    super().__init__(root, shard_name, layout)
    os.makedirs(self.tmp)
    self.index = io.StringIO()
    self.csv = csv.writer(self.index, lineterminator="\n")
    self.csv.writerow(["file", "source_id", "variation"]
                      + (list(celeba.ATTR_NAMES) if layout.attributes else []))
    self.latents = open(os.path.join(self.tmp, ".latents"), "wb") if layout.latent_dim else None
    self.digests: list[bytes] = []

  def add(self, source_id: str, images: np.ndarray, latents: Sequence[np.ndarray] | None,
          attributes: np.ndarray | None) -> None:
    attrs = attributes.tolist() if attributes is not None else []
    for k in range(images.shape[0]):
      file = generated.png_file_name(source_id, k)
      png = encode_png(images[k])
      path = os.path.join(self.tmp, file)
      os.makedirs(os.path.dirname(path), exist_ok=True)
      with open(path, "wb") as f:
        f.write(png)
      self.digests.append(file.encode() + b"\0" + hashlib.sha256(png).digest())
      self.csv.writerow([file, source_id, k] + attrs)
      if self.latents is not None:
        self.latents.write(np.stack([a[k] for a in latents]).astype("<f4").tobytes())
    self.records += images.shape[0]
    self.sources += 1

  def _write_latents(self) -> list[bytes]:
    raw = os.path.join(self.tmp, ".latents")
    self.latents.close()
    path = os.path.join(self.tmp, "latents.npy")
    with open(path, "wb") as out, open(raw, "rb") as f:
      np.lib.format.write_array_header_1_0(out, {
          "descr": "<f4", "fortran_order": False,
          "shape": (self.records, 3, self.layout.latent_dim)})
      shutil.copyfileobj(f, out)
    os.remove(raw)
    return [b"latents.npy\0" + bytes.fromhex(outputs.sha256_file(path))]

  def commit(self) -> Shard:
    index = self.index.getvalue().encode()
    with open(os.path.join(self.tmp, "index.csv"), "wb") as f:
      f.write(index)
    tail = self._write_latents() if self.latents is not None else []
    h = hashlib.sha256()
    for part in [b"index.csv\0" + hashlib.sha256(index).digest(), *self.digests, *tail]:
      h.update(part)
    os.sync()  # Every file of the folder on disk before the rename (one call, not one per file).
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(self.tmp) for f in fs)
    return self._done(h.hexdigest(), size)

  def abort(self) -> None:
    if self.latents is not None:
      self.latents.close()
    shutil.rmtree(self.tmp, ignore_errors=True)


def write_png_index(root: str, manifest: dict) -> None:
  """`root`/index.csv: the rows of every shard's index.csv in order, files relative to root."""
  tmp = os.path.join(root, ".index.csv.tmp")
  with open(tmp, "w", newline="", encoding="utf-8") as out:
    writer = csv.writer(out, lineterminator="\n")
    for n, key in enumerate(sorted(manifest["shards"], key=int)):
      folder = manifest["shards"][key]["file"]
      with open(os.path.join(root, folder, "index.csv"), newline="", encoding="utf-8") as f:
        rows = csv.reader(f)
        header = next(rows)
        if n == 0:
          writer.writerow(header)
        writer.writerows([f"{folder}/{row[0]}", *row[1:]] for row in rows)
    out.flush()
    os.fsync(out.fileno())
  os.replace(tmp, os.path.join(root, "index.csv"))


def open_shard(root: str, shard_name: str, layout: Layout) -> Any:
  return (PngShard if layout.format == "png" else ArrayRecordShard)(root, shard_name, layout)


def remove_stale(root: str, shard_names: Sequence[str]) -> None:
  """Deletes what a killed run left of `shard_names`: temporary files and uncommitted shards."""
  prefixes = tuple(temp_prefix(n) for n in shard_names)
  for entry in os.listdir(root):
    if entry.startswith(prefixes) or entry in shard_names:
      path = os.path.join(root, entry)
      shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
