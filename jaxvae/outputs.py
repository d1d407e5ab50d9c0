"""Atomic output files (PNG, NPZ, JSON) and labelled image grids."""

import io
import json
import os
import tempfile
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageDraw

SUMMARY = "summary.json"


class OutputExistsError(FileExistsError):
  """A mode would overwrite earlier outputs without --overwrite."""


def check_free(workdir: str, files: Sequence[str], mode: str, overwrite: bool) -> None:
  """Fails before any work when a mode's outputs already exist in `workdir`."""
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
