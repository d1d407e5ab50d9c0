"""Face detection (MTCNN, five landmarks) and CelebA alignment for photos, in JAX and numpy."""

from jaxvae.faces.align import align_celeba, celeba_inverse_map, fit_similarity
from jaxvae.faces.mtcnn import Detector, Face, Params
from jaxvae.faces.pipeline import (AlignedFace, NoFaceError, align_all, array_key, detect,
                                   detector, file_key, locate, prepare, refine_landmarks)

__all__ = ["AlignedFace", "Detector", "Face", "NoFaceError", "Params", "align_all",
           "align_celeba", "array_key", "celeba_inverse_map", "detect", "detector", "file_key",
           "fit_similarity", "locate", "prepare", "refine_landmarks"]
