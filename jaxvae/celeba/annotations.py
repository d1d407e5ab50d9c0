"""Readers of the official CelebA annotation files and their Kaggle CSV variants."""

import itertools
import warnings
from typing import Sequence

import numpy as np

from jaxvae.celeba.attributes import ATTR_NAMES
from jaxvae.celeba.dataset import _listing


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
