"""Output files committed as a set (PNG, NPZ, JSON and the summary entry) and labelled image grids.

A mode writes its files into a temporary folder inside the workdir (`OutputSet`); `commit` then
moves them into place and updates summary.json, with SIGINT held off for those few renames and a
journal file that a later run in the same workdir replays if the process died in the middle.
Without a commit (an error, Ctrl-C) the temporary folder is removed: nothing of the run appears.
"""

import contextlib
import hashlib
import io
import json
import os
import shutil
import signal
import tempfile
import threading
from typing import Any, Iterator, Sequence

import numpy as np
from PIL import Image, ImageDraw

SUMMARY = "summary.json"


class OutputExistsError(FileExistsError):
  """A mode would overwrite earlier outputs without --overwrite."""


class Interrupted(KeyboardInterrupt):
  """A long run stopped by SIGINT; the message says what it kept and how to resume."""


def check_workdir(workdir: str) -> None:
  """Creates `workdir` if needed; fails before any work when it is not a writable folder."""
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise NotADirectoryError(f"--workdir {workdir} exists and is not a folder")
  try:
    os.makedirs(workdir, exist_ok=True)
    with tempfile.TemporaryFile(dir=workdir):
      pass
  except OSError as e:
    raise PermissionError(f"--workdir {workdir} is not writable: {e.strerror or e}") from None


def check_free(workdir: str, files: Sequence[str], mode: str, overwrite: bool) -> None:
  """Fails before any work when a mode's outputs already exist in `workdir`."""
  recover(workdir)
  taken = [f for f in files if os.path.exists(os.path.join(workdir, f))]
  summary = os.path.join(workdir, SUMMARY)
  if os.path.exists(summary) and mode in read_json(summary):
    taken.append(f"{SUMMARY}[{mode!r}]")
  if taken and not overwrite:
    raise OutputExistsError(f"{workdir} already has outputs of --mode={mode}: {', '.join(taken)}; "
                            "pass --overwrite to replace them")


def default_file_mode(base: int = 0o666) -> int:
  """`base` less the process umask: what open() or mkdir() would give, unlike mkstemp's 0o600."""
  umask = os.umask(0)
  os.umask(umask)
  return base & ~umask


def write_bytes(path: str, data: bytes) -> None:
  """Writes `data` to a temporary file beside `path`, then renames it into place."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=directory)
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
    os.chmod(tmp, default_file_mode())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def to_uint8(images: np.ndarray) -> np.ndarray:
  return np.round(np.clip(np.asarray(images, np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)


def write_png(path: str, image: np.ndarray) -> None:
  buf = io.BytesIO()
  Image.fromarray(image if image.dtype == np.uint8 else to_uint8(image)).save(buf, format="PNG")
  write_bytes(path, buf.getvalue())


def write_npz(path: str, **arrays: np.ndarray) -> None:
  buf = io.BytesIO()
  np.savez_compressed(buf, **{k: np.asarray(v) for k, v in arrays.items()})
  write_bytes(path, buf.getvalue())


def sha256_file(path: str) -> str:
  """sha256 of a file's bytes, read in 1 MiB blocks."""
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def read_json(path: str) -> dict:
  with open(path) as f:
    return json.load(f)


def write_json(path: str, obj: Any) -> None:
  write_bytes(path, (json.dumps(obj, indent=2, default=_jsonable) + "\n").encode())


def update_summary(workdir: str, mode: str, summary: dict) -> None:
  """summary.json holds one entry per mode run in `workdir`; this replaces `mode`'s entry."""
  path = os.path.join(workdir, SUMMARY)
  merged = read_json(path) if os.path.exists(path) else {}
  merged[mode] = summary
  write_json(path, merged)


_JOURNAL = ".commit-{mode}.json"


@contextlib.contextmanager
def sigint_deferred(reraise: bool = True) -> Iterator[list]:
  """Holds SIGINT until the block ends (main thread only), noting it in the yielded list; then
  re-raises it as KeyboardInterrupt, unless not `reraise` (the caller checks the list)."""
  if threading.current_thread() is not threading.main_thread():
    yield []
    return
  received: list = []
  previous = signal.signal(signal.SIGINT, lambda *_: received.append(True))
  try:
    yield received
  finally:
    signal.signal(signal.SIGINT, previous)
  if received and reraise:
    raise KeyboardInterrupt("after commit")


def _replay(workdir: str, journal: str) -> None:
  """Finishes a commit described by `journal`: moves, summary entry, then the journal goes."""
  entry = read_json(journal)
  for src, dst in entry["moves"]:
    if os.path.exists(src):
      os.replace(src, dst)
  update_summary(workdir, entry["mode"], entry["summary"])
  shutil.rmtree(entry["tmp"], ignore_errors=True)
  os.remove(journal)


def recover(workdir: str) -> None:
  """Replays commits a killed process left half done, and removes abandoned temporary folders."""
  if not os.path.isdir(workdir):
    return
  for name in sorted(os.listdir(workdir)):
    path = os.path.join(workdir, name)
    if name.startswith(".commit-") and name.endswith(".json"):
      _replay(workdir, path)
  for name in os.listdir(workdir):
    if name.startswith(".outputs-") and os.path.isdir(os.path.join(workdir, name)):
      shutil.rmtree(os.path.join(workdir, name), ignore_errors=True)


class OutputSet:
  """The files of one mode's result, written into a temporary folder, committed together.

      with OutputSet(workdir, "variations", ["variations.png", "variations.npz"], overwrite) as out:
        out.write_png("variations.png", picture)
        out.commit(summary)
  """

  def __init__(self, workdir: str, mode: str, files: Sequence[str], overwrite: bool = False):
    check_workdir(workdir)
    check_free(workdir, files, mode, overwrite)
    self.workdir, self.mode, self.files = workdir, mode, tuple(files)
    self.tmp = ""
    self.written: list[str] = []
    self.committed = False

  def __enter__(self) -> "OutputSet":
    self.tmp = tempfile.mkdtemp(prefix=f".outputs-{self.mode}-", dir=self.workdir)
    return self

  def __exit__(self, *exc) -> None:
    if not self.committed:
      shutil.rmtree(self.tmp, ignore_errors=True)

  def path(self, name: str) -> str:
    """Where to write `name` (a file name in the workdir); every such file is committed."""
    if os.path.basename(name) != name or name.startswith("."):
      raise ValueError(f"output file names are plain names in the workdir, got {name!r}")
    if name not in self.written:
      self.written.append(name)
    return os.path.join(self.tmp, name)

  def write_png(self, name: str, image: np.ndarray) -> None:
    write_png(self.path(name), image)

  def write_npz(self, name: str, **arrays: np.ndarray) -> None:
    write_npz(self.path(name), **arrays)

  def write_bytes(self, name: str, data: bytes) -> None:
    write_bytes(self.path(name), data)

  def commit(self, summary: dict) -> None:
    """Moves every written file into the workdir and records `summary` under the mode's name."""
    missing = [f for f in self.files if not os.path.exists(os.path.join(self.tmp, f))]
    if missing:
      raise RuntimeError(f"output set of --mode={self.mode} is missing {', '.join(missing)}")
    journal = os.path.join(self.workdir, _JOURNAL.format(mode=self.mode))
    moves = [(os.path.join(self.tmp, f), os.path.join(self.workdir, f)) for f in self.written]
    with sigint_deferred():
      write_json(journal, {"mode": self.mode, "moves": moves, "summary": summary,
                           "tmp": self.tmp})
      _replay(self.workdir, journal)
      self.committed = True


def _jsonable(x):
  if isinstance(x, (np.floating, np.integer)):
    return x.item()
  if isinstance(x, np.ndarray):
    return x.tolist()
  raise TypeError(f"not JSON serializable: {type(x).__name__}")


def grid(tiles: np.ndarray, col_labels: Sequence[str] = (), row_labels: Sequence[str] = (),
         captions: Sequence[Sequence[str]] | None = None, scale: int = 2, pad: int = 2) -> np.ndarray:
  """[R, C, H, W, 3] images in [0, 1] -> one labelled uint8 picture.

  col_labels head the columns, row_labels start the rows, captions[r][c] sits under each tile.
  """
  tiles = to_uint8(tiles)
  rows, cols, h, w, _ = tiles.shape
  th, tw = h * scale, w * scale
  line = 12
  top = line + 2 if col_labels else 0
  left = max((len(s) for s in row_labels), default=0) * 6 + 4 if row_labels else 0
  cap = line if captions is not None else 0
  canvas = Image.new("RGB", (left + cols * (tw + pad) + pad, top + rows * (th + cap + pad) + pad),
                     "white")
  draw = ImageDraw.Draw(canvas)
  for c, label in enumerate(col_labels):
    draw.text((left + pad + c * (tw + pad), 1), label[: tw // 6], fill="black")
  for r in range(rows):
    y = top + pad + r * (th + cap + pad)
    if r < len(row_labels):
      draw.text((2, y + th // 2 - 5), row_labels[r], fill="black")
    for c in range(cols):
      x = left + pad + c * (tw + pad)
      canvas.paste(Image.fromarray(tiles[r, c]).resize((tw, th), Image.NEAREST), (x, y))
      if captions is not None and captions[r][c]:
        draw.text((x, y + th), captions[r][c][: tw // 6], fill="black")
  return np.asarray(canvas)
