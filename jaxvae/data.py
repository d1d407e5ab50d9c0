"""Input images: files, folders, globs and bundled portraits, preprocessed as each model was trained.

Each image is decoded to RGB (grayscale is replicated, alpha dropped, 16-bit scaled to 8-bit as the
originals' uint8 pipelines saw it), cropped, resized to 64x64 with PIL bilinear (torchvision's
Resize on PIL images) and returned as float32 in [0, 1]. The crop: aligned 178x218 CelebA images
get their model's original crop box; any other size gets the centred square crop; the bundled
portraits get a square box around the face.
"""

import functools
import glob
import os
from typing import Callable, NamedTuple, Sequence

import numpy as np
from PIL import Image

from jaxvae import celeba
from jaxvae.celeba import CELEBA_SIZE

IMAGE_SIZE = 64
# Below half the models' 64-pixel input, more than three quarters of the pixels the model sees
# would be invented by the resize: such an image is skipped, not hallucinated into a face.
MIN_SIDE = 32

# Public-domain portraits shipped inside installed packages: name -> (loader, face box).
# Boxes are squares around the face, framed like the aligned CelebA crops.
BUNDLED_PREFIX = "bundled:"


def _astronaut() -> np.ndarray:
  from skimage import data  # pylint: disable=import-outside-toplevel
  return data.astronaut()


def _grace_hopper() -> np.ndarray:
  from matplotlib import cbook  # pylint: disable=import-outside-toplevel
  with cbook.get_sample_data("grace_hopper.jpg") as f:
    return np.asarray(Image.open(f).convert("RGB"))


BUNDLED: dict[str, tuple[Callable[[], np.ndarray], tuple[int, int, int, int]]] = {
    "astronaut": (_astronaut, (121, 12, 321, 212)),
    "grace_hopper": (_grace_hopper, (72, 26, 462, 416)),
}


class InputError(ValueError):
  """No usable input, or an input spec that names nothing."""


class Inputs(NamedTuple):
  names: list[str]  # one per image: file path or bundled:<name>
  images: np.ndarray  # [N, 64, 64, 3] float32 in [0, 1]
  skipped: list[tuple[str, str]]  # (path, reason) of unreadable files


def expand(spec: str | Sequence[str]) -> list[str]:
  """Files named by a comma-separated spec of files, folders (non-recursive) and globs.

  An empty spec means every bundled portrait. A path or glob that names nothing is an error.
  """
  items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
  if not items:
    return [BUNDLED_PREFIX + name for name in BUNDLED]
  files = []
  for item in items:
    if item.startswith(BUNDLED_PREFIX):
      if item[len(BUNDLED_PREFIX):] not in BUNDLED:
        raise InputError(f"unknown bundled portrait {item!r}; known: "
                         + ", ".join(BUNDLED_PREFIX + n for n in BUNDLED))
      files.append(item)
    elif os.path.isdir(item):
      found = sorted(os.path.join(item, f) for f in os.listdir(item)
                     if not f.startswith(".") and os.path.isfile(os.path.join(item, f)))
      if not found:
        raise InputError(f"input folder {item} is empty")
      files += found
    elif os.path.isfile(item):
      files.append(item)
    elif glob.has_magic(item):
      found = sorted(f for f in glob.glob(item) if os.path.isfile(f))
      if not found:
        raise InputError(f"input pattern {item} matches no file")
      files += found
    else:
      raise InputError(f"input {item} does not exist")
  return files


def _pil_jpeg(raw: np.ndarray) -> np.ndarray | None:
  """A JPEG decoded fully with PIL, which fails on corrupt entropy-coded data that OpenCV's
  decoder only warns about (libjpeg's "Corrupt JPEG data" line) and decodes into garbage: its
  [H, W, 3] uint8 RGB pixels when it is RGB or grayscale (the same libjpeg-turbo decode as
  OpenCV's, tests/test_data.py), None for other kinds (CMYK), which OpenCV converts."""
  import io  # pylint: disable=import-outside-toplevel
  try:
    with Image.open(io.BytesIO(raw.tobytes())) as image:
      image.load()
      if image.mode not in ("RGB", "L"):
        return None
      rgb = np.asarray(image)
  except (OSError, ValueError, SyntaxError) as e:
    raise InputError(f"corrupt JPEG data ({e})") from None
  return rgb if rgb.ndim == 3 else np.repeat(rgb[..., None], 3, axis=-1)


def _check_side(shape: tuple[int, ...]) -> None:
  if min(shape[:2]) < MIN_SIDE:
    raise InputError(f"{shape[1]}x{shape[0]} pixels is below the minimum of "
                     f"{MIN_SIDE} on a side (the models see {IMAGE_SIZE}x{IMAGE_SIZE} crops; a "
                     "smaller image would be mostly invented by the resize)")


def decode(path: str) -> np.ndarray:
  """Any JPEG/PNG/... file -> [H, W, 3] uint8 RGB. Raises InputError when unreadable, corrupt or
  smaller than MIN_SIDE pixels on a side."""
  import cv2  # pylint: disable=import-outside-toplevel

  raw = np.fromfile(path, np.uint8) if os.path.getsize(path) else np.zeros(0, np.uint8)
  if raw[:3].tobytes() == b"\xff\xd8\xff":
    rgb = _pil_jpeg(raw)  # Decoded once: PIL's check is also the decode.
    if rgb is not None:
      _check_side(rgb.shape)
      return rgb
  image = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED) if raw.size else None
  if image is None:
    raise InputError("not a readable image")
  _check_side(image.shape)
  if image.dtype == np.uint16:
    image = np.round(image / 257.0).astype(np.uint8)
  elif image.dtype != np.uint8:
    image = np.round(np.clip(image.astype(np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)
  if image.ndim == 2:
    image = image[..., None]
  if image.shape[-1] == 1:
    return np.repeat(image, 3, axis=-1)
  if image.shape[-1] == 4:
    return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
  return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def crop_box(width: int, height: int, celeba_box: tuple[int, int, int, int]):
  """The model's CelebA box for 178x218 images, else the centred square."""
  if (width, height) == CELEBA_SIZE:
    return celeba_box
  side = min(width, height)
  left, top = (width - side) // 2, (height - side) // 2
  return left, top, left + side, top + side


def preprocess(rgb: np.ndarray, box: tuple[int, int, int, int],
               as_uint8: bool = False) -> np.ndarray:
  """uint8 [H, W, 3] -> crop `box` -> PIL bilinear resize to 64 -> float32 [64, 64, 3] in [0, 1]
  (its uint8 pixels with `as_uint8`): CelebA's own preprocessing (jaxvae.celeba.preprocess)."""
  return celeba.preprocess(rgb, box, IMAGE_SIZE, as_uint8)


def load_one(name: str, celeba_box: tuple[int, int, int, int],
             as_uint8: bool = False) -> np.ndarray:
  """One input, cropped without face detection (the bundled portraits by their hand boxes):
  float32 [64, 64, 3] in [0, 1], or its uint8 pixels with `as_uint8`."""
  if name.startswith(BUNDLED_PREFIX):
    loader, box = BUNDLED[name[len(BUNDLED_PREFIX):]]
    rgb = loader()
  else:
    rgb = decode(name)
    box = crop_box(rgb.shape[1], rgb.shape[0], celeba_box)
  return preprocess(rgb, box, as_uint8)


def load_faces(name: str, celeba_box: tuple[int, int, int, int], align: str = "off",
               as_uint8: bool = False) -> list[tuple[str, np.ndarray]]:
  """(name, [64, 64, 3] image) of every face an input yields under `align` (jaxvae.faces):

  off: the image cropped as it is. auto: aligned 178x218 CelebA images as they are, every other
  photo detected and aligned into CelebA's frame first (several faces: name#1, name#2, ...; none:
  a ValueError naming it); the bundled portraits keep their hand-framed boxes. celeba: every
  image, bundled ones too, detected and aligned. Then the model's CelebA crop (uint8 pixels with
  `as_uint8`, as load_one).
  """
  bundled = name.startswith(BUNDLED_PREFIX)
  if align == "off" or (bundled and align == "auto"):
    return [(name, load_one(name, celeba_box, as_uint8))]
  from jaxvae.faces import pipeline  # pylint: disable=import-outside-toplevel  (loads MTCNN)
  rgb = BUNDLED[name[len(BUNDLED_PREFIX):]][0]() if bundled else decode(name)
  key = functools.partial(pipeline.array_key, rgb) if bundled else \
      functools.partial(pipeline.file_key, name)
  return [(n, preprocess(im, crop_box(im.shape[1], im.shape[0], celeba_box), as_uint8))
          for n, im in pipeline.prepare(name, rgb, align, key)]


def load(spec: str | Sequence[str], celeba_box: tuple[int, int, int, int],
         progress: Callable[[int, int], None] | None = None, align: str = "off") -> Inputs:
  """Reads every image named by `spec` (faces found under `align`, see load_faces); unreadable
  files, photos without a face and images too small are skipped and reported by name."""
  names, images, skipped = [], [], []
  files = expand(spec)
  for i, name in enumerate(files):
    try:
      for face_name, image in load_faces(name, celeba_box, align):
        images.append(image)
        names.append(face_name)
    except (InputError, OSError, ValueError) as e:
      skipped.append((name, str(e) or type(e).__name__))
    if progress is not None:
      progress(i + 1, len(files))
  if not images:
    raise InputError("no readable input image among: "
                     + "; ".join(f"{p} ({why})" for p, why in skipped))
  return Inputs(names, np.stack(images), skipped)
