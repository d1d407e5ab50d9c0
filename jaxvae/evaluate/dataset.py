"""What --mode=evaluate scores: a CelebA split (with attributes) or the images of config.input."""

import os
from typing import Callable, Iterator, NamedTuple

import numpy as np

from jaxvae import celeba, data, models, options


class Dataset(NamedTuple):
  """Names, optional CelebA attributes, and a batch iterator."""
  description: str
  names: list[str]
  attributes: np.ndarray | None  # [N, 40] int8 in {-1, 1}
  batches: Callable[[int], Iterator]  # batch_size -> (indices [n], images [n, 64, 64, 3]), ...
  image: Callable[[int], np.ndarray]  # index -> [64, 64, 3]


def open_dataset(run: options.Run, model_name: str, log: Callable[[str], None]) -> Dataset:
  """The CelebA split of config.celeba, else the images of config.input (no attributes)."""
  c, max_images = run.common, run.section.max_images
  box = models.get_info(model_name).celeba_box
  if c.celeba:
    ds = celeba.open_celeba(c.celeba, c.split, max_images or None, box)
    return Dataset(f"CelebA {c.split} split of {c.celeba} ({len(ds)} images)",
                   [str(n) for n in ds.names], np.asarray(ds.attributes),
                   lambda bs: ((b.indices, b.images) for b in ds.batches(bs)), ds.load_image)
  inputs = data.load(c.input, box, align=c.align)
  for path, why in inputs.skipped:
    log(f"warning: skipped {path}: {why}")
  images = inputs.images[: max_images or None]

  def batches(bs: int) -> Iterator:
    for start in range(0, len(images), bs):
      yield np.arange(start, min(start + bs, len(images))), images[start:start + bs]
  return Dataset(f"{len(images)} images of input {c.input or '(bundled portraits)'}",
                 inputs.names[:len(images)], None, batches, lambda i: images[i])


def label(ckpt_dir: str, metadata: dict, taken: set) -> str:
  """A short unique name for a model in tables and file names: <model>-l<latent>[-<source>]."""
  source = os.path.basename(str(metadata.get("source", ""))) or metadata["model"]
  name = f"{metadata['model']}-l{metadata['model_config'].get('latent_dim', '')}"
  if name in taken:
    name = f"{name}-{os.path.splitext(source)[0]}"
  while name in taken:
    name += "'"
  return name
