"""Photos to CelebA-aligned faces: MTCNN detection, landmark refinement, alignment, with a cache.

`prepare(name, rgb, mode, key)` is the one call per input image: it returns the images to feed
the model's usual 178x218 crop, named `name` for one face or `name#1`, `name#2`, ... (largest
face first) for several, and raises NoFaceError (a ValueError, so data.load skips the file by
name) when no face is found.

Landmark refinement: MTCNN's landmarks move by a few pixels with the face's position, scale and
rotation in the photo (up to 6 px on Grace Hopper's 88 px eye distance under a 15 degree
rotation). Each refinement pass warps the photo into CelebA's frame with the current landmarks,
where the face is upright at a fixed scale, runs O-Net on 27 boxes around a fixed box there
(shifts of -6, 0, +6 % of its side in x and y, sides x 0.94, 1, 1.06), averages the landmarks
weighted by O-Net's face probability and maps them back to the photo. One pass (the default)
makes them consistent to under 1 px across such transforms.

Detections and refined landmarks are stored as JSON under `jaxvae.paths.cache_dir("faces")`,
keyed by the sha256 of the file's bytes (`file_key`) and stamped with the weights, parameters and
image shape, so a rerun neither detects nor refines again (nor loads MTCNN).
"""

import functools
import hashlib
import json
from typing import Callable, NamedTuple

import numpy as np

from jaxvae import celeba, options, outputs, paths, weights
from jaxvae.faces import align, mtcnn, nets

WEIGHTS = "mtcnn"  # Published name (port/sources.py) or a directory written by the port tool.
MODES = options.ALIGN_MODES
CACHE_VERSION = 1
# O-Net's box in the aligned frame (0-based): the median of the boxes MTCNN's own cascade hands
# O-Net on the two bundled portraits once aligned (centre (86, 126), side 108).
CANONICAL_BOX = np.array([32.0, 72.0, 140.0, 180.0])
REFINE_SHIFTS = (-0.06, 0.0, 0.06)
REFINE_SIDES = (0.94, 1.0, 1.06)

Log = Callable[[str], None]


class NoFaceError(ValueError):
  """No face was found in an input image."""


class AlignedFace(NamedTuple):
  image: np.ndarray  # [218, 178, 3] uint8, aligned as CelebA's img_align_celeba
  face: mtcnn.Face  # MTCNN's detection in the photo (facenet-pytorch's output)
  landmarks: np.ndarray  # [5, 2] the refined landmarks the alignment used, photo pixels


@functools.lru_cache(maxsize=4)
def detector(spec: str = WEIGHTS, log: Log = print) -> mtcnn.Detector:
  """A Detector with MTCNN's weights (the published name is ported once into the cache)."""
  return mtcnn.Detector(weights.load_aux(spec, "mtcnn", nets.abstract_variables(), log=log))


def _refine_boxes() -> np.ndarray:
  cx, cy = (CANONICAL_BOX[:2] + CANONICAL_BOX[2:]) / 2
  side = CANONICAL_BOX[2] - CANONICAL_BOX[0]
  return np.array([[cx + dx * side - s / 2, cy + dy * side - s / 2,
                    cx + dx * side + s / 2, cy + dy * side + s / 2]
                   for dx in REFINE_SHIFTS for dy in REFINE_SHIFTS
                   for s in (side * k for k in REFINE_SIDES)])


def refine_landmarks(rgb: np.ndarray, landmarks: np.ndarray, det: mtcnn.Detector,
                     passes: int = 1) -> np.ndarray:
  """Landmarks [5, 2] re-estimated in CelebA's frame `passes` times (see the module docstring)."""
  boxes = _refine_boxes()
  origin = np.floor(boxes[:, :2].min(axis=0)).astype(int) - 1  # the window the boxes need
  size = np.ceil(boxes[:, 2:].max(axis=0)).astype(int) + 1 - origin
  for _ in range(passes):
    inverse = align.celeba_inverse_map(landmarks)
    window = align.warp_cubic(rgb, inverse, *size, origin=tuple(origin))
    points, prob = det.landmarks_in_boxes(window, boxes - np.tile(origin, 2))
    if not prob.sum() > 0:
      break
    mean = (points * prob[:, None, None]).sum(axis=0) / prob.sum() + origin
    landmarks = np.concatenate([mean, np.ones((5, 1))], axis=1) @ inverse[:, :2]
  return landmarks


def locate(rgb: np.ndarray, spec: str = WEIGHTS, key: str | None = None,
           refine: int = 1) -> list[tuple[mtcnn.Face, np.ndarray]]:
  """(MTCNN face, refined landmarks [5, 2]) per face, largest first; cached when `key` is given."""
  if rgb.ndim != 3 or rgb.shape[-1] != 3 or rgb.dtype != np.uint8:
    raise ValueError(f"expected an RGB uint8 image [H, W, 3], got {rgb.dtype} {tuple(rgb.shape)}")
  stamp = json.loads(json.dumps({"version": CACHE_VERSION, "weights": spec,
                                 "params": mtcnn.Params(), "shape": rgb.shape}))
  path = paths.cache_dir("faces", f"{key}.json") if key is not None else None
  entry = _read_cache(path, stamp) if path else None
  if entry is None:
    entry = {"stamp": stamp, "faces": [_face_json(f) for f in detector(spec)(rgb)]}
  faces = [_face_from_json(f) for f in entry["faces"]]
  refined = entry.setdefault("refined", {})
  if str(refine) not in refined:
    refined[str(refine)] = [refine_landmarks(rgb, f.landmarks, detector(spec), refine).tolist()
                            if refine else f.landmarks.tolist() for f in faces]
    if path:
      _write_cache(path, entry)
  return [(f, np.array(r, np.float64)) for f, r in zip(faces, refined[str(refine)])]


def detect(rgb: np.ndarray, spec: str = WEIGHTS, key: str | None = None) -> list[mtcnn.Face]:
  """MTCNN's faces in an RGB uint8 [H, W, 3] image, largest first (facenet-pytorch's output)."""
  return [f for f, _ in locate(rgb, spec, key, refine=0)]


def _face_json(face: mtcnn.Face) -> dict:
  return {"box": face.box.tolist(), "score": face.score, "landmarks": face.landmarks.tolist()}


def _face_from_json(f: dict) -> mtcnn.Face:
  return mtcnn.Face(np.array(f["box"], np.float64), float(f["score"]),
                    np.array(f["landmarks"], np.float64).reshape(5, 2))


def _read_cache(path: str, stamp: dict) -> dict | None:
  """The cached entry when readable, well-formed and made with the same stamp, else None."""
  try:
    with open(path) as f:
      entry = json.load(f)
    if entry.get("stamp") != stamp or not isinstance(entry.get("refined", {}), dict):
      return None
    for f in entry["faces"]:
      _face_from_json(f)
    return entry
  except (OSError, ValueError, KeyError, TypeError, AttributeError):
    return None


def _write_cache(path: str, entry: dict) -> None:
  """Atomic write; a cache that cannot be written only costs a detection next time."""
  try:
    outputs.write_bytes(path, json.dumps(entry).encode())
  except OSError:
    pass


def file_key(path: str) -> str:
  """sha256 of the file's bytes: the cache key of a photo file."""
  return outputs.sha256_file(path)


def array_key(rgb: np.ndarray) -> str:
  """sha256 of an image array's shape and pixels (for images that are not files)."""
  return hashlib.sha256(repr(rgb.shape).encode() + np.ascontiguousarray(rgb).tobytes()).hexdigest()


def align_all(rgb: np.ndarray, spec: str = WEIGHTS, key: str | None = None,
              refine: int = 1) -> list[AlignedFace]:
  """Every face of the photo aligned into CelebA's 178x218 frame, largest first."""
  return [AlignedFace(align.align_celeba(rgb, marks), face, marks)
          for face, marks in locate(rgb, spec, key, refine)]


def prepare(name: str, rgb: np.ndarray, mode: str = "auto",
            key: str | Callable[[], str] | None = None,
            spec: str = WEIGHTS) -> list[tuple[str, np.ndarray]]:
  """(name, uint8 image) pairs to crop for the model, as `--config.align=mode` asks.

  off: the image as it is. auto: a 178x218 image as it is (already aligned), any other image
  detected and aligned. celeba: always detected and aligned. `key`: the cache key
  (file_key(path) for files; None = no disk cache), or a function returning it, called only
  when the image is detected (a file is then read and hashed only when needed).
  """
  if mode not in MODES:
    raise ValueError(f"align must be one of {', '.join(MODES)}, got {mode!r}")
  if mode == "off" or (mode == "auto" and rgb.shape[1::-1] == celeba.CELEBA_SIZE):
    return [(name, rgb)]
  found = align_all(rgb, spec, key() if callable(key) else key)
  if not found:
    raise NoFaceError(f"no face found (MTCNN, faces of at least "
                      f"{mtcnn.Params().min_face_size} pixels)")
  if len(found) == 1:
    return [(name, found[0].image)]
  return [(f"{name}#{i + 1}", a.image) for i, a in enumerate(found)]
