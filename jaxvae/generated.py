"""Reads what --mode=generate wrote: the record encoding, and `open(DIR)`, a grain data source.

    import grain, jaxvae.generated
    source = jaxvae.generated.open("out/generate")     # len(source) records, random access
    record = source[0]  # {"source_id": "000001.jpg", "variation": 0, "image": [64, 64, 3], ...}
    loader = grain.MapDataset.source(source).shuffle(seed=0).batch(256)

Record encoding ("JVR1"; one ArrayRecord record per generated image, readable without TensorFlow
or jaxvae: `grain.sources.ArrayRecordDataSource(paths)[i]` gives the bytes):

    bytes 0-3    b"JVR1"
    bytes 4-7    H, uint32 little-endian
    bytes 8-8+H  a UTF-8 JSON header: {"source_id": str, "variation": int,
                 "fields": [[name, dtype, shape, nbytes], ...]}
    then         the fields' bytes back to back, in the order listed.

Fields: `image` ([64, 64, 3] RGB; dtype "|u1": raw row-major uint8, or "png": a PNG file of
nbytes bytes), and when the run saved them `mean`, `logvar`, `z` ("<f4" [L], the posterior mean
and log-variance the variation was drawn around and its latent) and `attributes` ("|i1" [40],
-1/1 in `jaxvae.celeba.ATTR_NAMES` order, for CelebA sources). Numbers are little-endian C order.
The `png` output format is a folder per shard holding `<source>_<k>.png` files, `index.csv`
(file, source_id, variation, attribute columns) and, with latents, `latents.npy` [records, 3, L]
(mean, logvar, z), rows in index order. Imports neither jax nor grain until `open` is called.
"""

import bisect
import builtins
import csv
import hashlib
import io
import json
import os
import re
import struct
from typing import Any, Sequence

import numpy as np

from jaxvae import outputs

MAGIC = b"JVR1"
MANIFEST = "manifest.json"
OUTPUT_DIR = "generate"  # Where --mode=generate writes inside its --workdir.
FORMAT_VERSION = 1
RAW, PNG = "|u1", "png"  # The image field's encodings.
ENCODING = ('JVR1: b"JVR1", uint32 little-endian H, H bytes of UTF-8 JSON {"source_id", '
            '"variation", "fields": [[name, dtype, shape, nbytes], ...]}, then the fields\' bytes '
            'in that order (little-endian, C order; dtype "png" = a PNG file); see '
            'jaxvae/generated.py')
LATENTS = ("mean", "logvar", "z")
_HEAD = struct.Struct("<4sI")


class GeneratedError(ValueError):
  """A folder that holds no usable generate output, or a malformed record."""


def fields_json(fields: Sequence[tuple[str, str, Sequence[int]]]) -> str:
  """The JSON of a record's field list for fixed-size fields (all but PNG images)."""
  return json.dumps([[name, dtype, list(shape), int(np.prod(shape)) * np.dtype(dtype).itemsize]
                     for name, dtype, shape in fields], separators=(",", ":"))


def encode_record(source_id: str, variation: int, fields: str, payload: Sequence[Any]) -> bytes:
  """One record: `fields` from `fields_json` (or a JSON list with PNG sizes), `payload` the
  fields' bytes-like values in the same order."""
  header = (f'{{"source_id":{json.dumps(source_id)},"variation":{int(variation)},'
            f'"fields":{fields}}}').encode()
  return b"".join([_HEAD.pack(MAGIC, len(header)), header, *payload])


def decode_record(data: bytes) -> dict[str, Any]:
  """A record's bytes -> {"source_id", "variation", "image" uint8 [64, 64, 3], and the other
  fields as numpy arrays}."""
  if len(data) < _HEAD.size or data[:4] != MAGIC:
    raise GeneratedError(f"not a jaxvae generated record (magic {bytes(data[:4])!r}, expected "
                         f"{MAGIC!r})")
  _, size = _HEAD.unpack_from(data)
  header = json.loads(bytes(data[_HEAD.size:_HEAD.size + size]))
  out: dict[str, Any] = {"source_id": header["source_id"], "variation": header["variation"]}
  offset = _HEAD.size + size
  for name, dtype, shape, nbytes in header["fields"]:
    raw = data[offset:offset + nbytes]
    if len(raw) != nbytes:
      raise GeneratedError(f"record of {header['source_id']!r} is truncated in field {name}")
    out[name] = (decode_png(raw) if dtype == PNG
                 else np.frombuffer(raw, np.dtype(dtype)).reshape(shape).copy())
    offset += nbytes
  return out


def decode_png(data: bytes) -> np.ndarray:
  from PIL import Image  # pylint: disable=import-outside-toplevel
  with Image.open(io.BytesIO(data)) as image:
    return np.asarray(image.convert("RGB"))


def find_manifest(path: str) -> str:
  """The manifest.json in `path` or in `path`/generate."""
  for candidate in (os.path.join(path, MANIFEST), os.path.join(path, OUTPUT_DIR, MANIFEST)):
    if os.path.isfile(candidate):
      return candidate
  raise GeneratedError(f"no {MANIFEST} in {path} or {os.path.join(path, OUTPUT_DIR)}: not the "
                       "output of --mode=generate")


class Records:
  """The records of ArrayRecord shards, decoded: a grain random-access data source."""

  def __init__(self, paths: Sequence[str]):
    self.paths = list(paths)
    self._raw = None

  @property
  def raw(self):
    """grain.sources.ArrayRecordDataSource over the shards: the records' bytes."""
    if self._raw is None:
      import grain  # pylint: disable=import-outside-toplevel
      self._raw = grain.sources.ArrayRecordDataSource(self.paths)
    return self._raw

  def __len__(self) -> int:
    return len(self.raw) if self.paths else 0

  def __getitem__(self, index: int) -> dict[str, Any]:
    return decode_record(self.raw[index])

  def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
    return [decode_record(r) for r in self.raw.__getitems__(indices)]

  def __getstate__(self):  # Reopened in each grain worker process.
    return {"paths": self.paths, "_raw": None}

  def __repr__(self) -> str:
    return f"Records({len(self.paths)} ArrayRecord shards)"


def png_file_name(source_id: str, k: int) -> str:
  """`<id>_<k>.png` in a png shard folder; characters of the id outside [A-Za-z0-9._/-] are
  replaced, and then a short hash of the id is added so that two ids never share a file."""
  safe = re.sub(r"[^A-Za-z0-9._/-]", "_", source_id).replace("..", "_").lstrip("/")
  if safe != source_id:
    safe += "-" + hashlib.sha256(source_id.encode()).hexdigest()[:8]
  return f"{safe}_{k:02d}.png"


def read_index(shard_dir: str) -> tuple[list[str], list[list[str]]]:
  """The header and rows of a png shard's index.csv."""
  with builtins.open(os.path.join(shard_dir, "index.csv"), newline="", encoding="utf-8") as f:
    rows = list(csv.reader(f))
  return rows[0], rows[1:]


class PngRecords:
  """The records of `png` shard folders (index.csv, PNG files, latents.npy): a grain data source.

  Each shard's index is read on first use and kept compactly: one id (and attribute row) per
  source, whose K variations are consecutive rows.
  """

  def __init__(self, shard_dirs: Sequence[str], counts: Sequence[int], num_variations: int):
    self.shard_dirs, self.counts, self.k = list(shard_dirs), list(counts), num_variations
    self._ends = np.cumsum(self.counts).tolist()
    self._index: dict[int, tuple[list[str], np.ndarray | None, tuple | None]] = {}

  def __len__(self) -> int:
    return self._ends[-1] if self._ends else 0

  def _shard(self, shard: int) -> tuple[list[str], np.ndarray | None, tuple | None]:
    if shard not in self._index:
      header, rows = read_index(self.shard_dirs[shard])
      if len(rows) != self.counts[shard]:
        raise GeneratedError(f"{self.shard_dirs[shard]}/index.csv has {len(rows)} rows, the "
                             f"manifest says {self.counts[shard]}")
      per_source = rows[::self.k]
      attrs = (np.array([r[3:] for r in per_source], np.int8).reshape(len(per_source), -1)
               if len(header) > 3 else None)
      self._index[shard] = ([r[1] for r in per_source], attrs,
                            self._latents_layout(shard, len(rows)))
    return self._index[shard]

  def _latents_layout(self, shard: int, rows: int) -> tuple | None:
    """(path, data offset, dtype, row shape) of a shard's latents.npy, whose header is read once;
    None without latents."""
    path = os.path.join(self.shard_dirs[shard], "latents.npy")
    if not os.path.exists(path):
      return None
    with builtins.open(path, "rb") as f:
      version = np.lib.format.read_magic(f)
      read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                     else np.lib.format.read_array_header_2_0)
      shape, fortran, dtype = read_header(f)
      if shape[:1] != (rows,) or fortran:
        raise GeneratedError(f"{path} holds {shape} (fortran order {fortran}), not one C-order "
                             f"row per record of index.csv ({rows})")
      return path, f.tell(), dtype, shape[1:]

  @staticmethod
  def _latents_row(layout: tuple, row: int) -> np.ndarray:
    path, offset, dtype, shape = layout
    size = dtype.itemsize * int(np.prod(shape))
    with builtins.open(path, "rb") as f:
      f.seek(offset + row * size)
      raw = f.read(size)
    if len(raw) != size:
      raise GeneratedError(f"{path} is truncated at record {row}")
    return np.frombuffer(raw, dtype).reshape(shape).copy()

  def __getitem__(self, index: int) -> dict[str, Any]:
    if not 0 <= index < len(self):
      raise IndexError(f"record {index} out of range [0, {len(self)})")
    shard = bisect.bisect_right(self._ends, index)
    row = index - (self._ends[shard - 1] if shard else 0)
    ids, attrs, latents = self._shard(shard)
    source, k = divmod(row, self.k)
    out: dict[str, Any] = {"source_id": ids[source], "variation": k, "image": _read_png(
        os.path.join(self.shard_dirs[shard], png_file_name(ids[source], k)))}
    if attrs is not None:
      out["attributes"] = attrs[source].copy()
    if latents is not None:
      out |= dict(zip(LATENTS, self._latents_row(latents, row)))
    return out

  def __getstate__(self):  # The index cache is rebuilt in each grain worker process.
    return {**self.__dict__, "_index": {}}

  def __repr__(self) -> str:
    return f"PngRecords({len(self.shard_dirs)} shard folders, {len(self)} records)"


def _read_png(path: str) -> np.ndarray:
  with builtins.open(path, "rb") as f:
    return decode_png(f.read())


def open(path: str, allow_incomplete: bool = False,  # pylint: disable=redefined-builtin
         verify: bool = False) -> Records | PngRecords:
  """The records generated into `path` (a --workdir or its generate/ folder), shards in order.

  An unfinished run is refused unless `allow_incomplete` (then the committed shards are read).
  `verify` checks every shard's sha256 against the manifest first.
  """
  manifest_path = find_manifest(path)
  root = os.path.dirname(manifest_path)
  with builtins.open(manifest_path, encoding="utf-8") as f:
    manifest = json.load(f)
  if manifest.get("format_version") != FORMAT_VERSION:
    raise GeneratedError(f"{manifest_path}: format_version {manifest.get('format_version')!r}, "
                         f"this reader reads {FORMAT_VERSION}")
  shards = [manifest["shards"][k] for k in sorted(manifest["shards"], key=int)]
  if not manifest.get("complete") and not allow_incomplete:
    raise GeneratedError(f"the generation in {root} is unfinished: {len(shards)} of "
                         f"{manifest['num_shards']} shards committed; run the same command again "
                         "to finish it, or pass allow_incomplete=True to read those")
  if verify:
    bad = [s["file"] for s in shards if _digest(os.path.join(root, s["file"])) != s["sha256"]]
    if bad:
      raise GeneratedError(f"shards of {root} do not match their sha256 in the manifest: "
                           + ", ".join(bad))
  shards = [s for s in shards if s["records"]]
  if manifest["config"]["format"] == "png":
    return PngRecords([os.path.join(root, s["file"]) for s in shards],
                      [s["records"] for s in shards], manifest["config"]["num_variations"])
  return Records([os.path.join(root, s["file"]) for s in shards])


def _digest(path: str) -> str:
  """sha256 of a shard file, or of a png shard folder (see jaxvae.generate.shards)."""
  if not os.path.isdir(path):
    return outputs.sha256_file(path)
  h = hashlib.sha256()
  _, rows = read_index(path)
  for name in ["index.csv", *(r[0] for r in rows)] + (
      ["latents.npy"] if os.path.exists(os.path.join(path, "latents.npy")) else []):
    h.update(name.encode() + b"\0" + bytes.fromhex(outputs.sha256_file(os.path.join(path, name))))
  return h.hexdigest()
