"""Port of pytorch-fid's FID Inception-v3 weights (pt_inception-2015-12-05-6726825d.pth) to flax.

  python -m port --model=inception --source=inception-fid --out=DIR --verify

The table maps each of the 94 BasicConv2d modules of `fid_inception_v3()` (conv weight; BatchNorm
weight, bias, running mean and variance) to `jaxvae.nets.inception.FIDInceptionV3`. Ignored, by
name: `fc.weight` and `fc.bias` (the graph's 1008 logits; FID uses the pool3 features before
them) and the BatchNorm `num_batches_tracked` counters.
"""

from typing import Any, Callable

import numpy as np

from jaxvae import checkpoint
from jaxvae.nets import inception as flax_inception
from port import convert as port_convert
from port.tables import common

Log = Callable[[str], None]

STEM = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3")
# The BasicConv2d modules of each block type, in the originals' attribute names.
BLOCK_A = ("branch1x1", "branch5x5_1", "branch5x5_2", "branch3x3dbl_1", "branch3x3dbl_2",
           "branch3x3dbl_3", "branch_pool")
BLOCK_B = ("branch3x3", "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3")
BLOCK_C = ("branch1x1", "branch7x7_1", "branch7x7_2", "branch7x7_3", "branch7x7dbl_1",
           "branch7x7dbl_2", "branch7x7dbl_3", "branch7x7dbl_4", "branch7x7dbl_5", "branch_pool")
BLOCK_D = ("branch3x3_1", "branch3x3_2", "branch7x7x3_1", "branch7x7x3_2", "branch7x7x3_3",
           "branch7x7x3_4")
BLOCK_E = ("branch1x1", "branch3x3_1", "branch3x3_2a", "branch3x3_2b", "branch3x3dbl_1",
           "branch3x3dbl_2", "branch3x3dbl_3a", "branch3x3dbl_3b", "branch_pool")
BLOCKS = (("Mixed_5b", BLOCK_A), ("Mixed_5c", BLOCK_A), ("Mixed_5d", BLOCK_A),
          ("Mixed_6a", BLOCK_B), ("Mixed_6b", BLOCK_C), ("Mixed_6c", BLOCK_C),
          ("Mixed_6d", BLOCK_C), ("Mixed_6e", BLOCK_C), ("Mixed_7a", BLOCK_D),
          ("Mixed_7b", BLOCK_E), ("Mixed_7c", BLOCK_E))
# torch module path -> flax module path of every BasicConv2d.
BASIC_CONVS = ([(name, name) for name in STEM]
               + [(f"{block}.{conv}", f"{block}/{conv}") for block, convs in BLOCKS
                  for conv in convs])
TABLE = [entry for torch_name, flax_name in BASIC_CONVS
         for entry in (common.conv(f"{flax_name}/conv", f"{torch_name}.conv", bias=False)
                       + common.batch_norm(f"{flax_name}/bn", f"{torch_name}.bn"))]
IGNORED = ("fc.weight", "fc.bias")
PARITY_BATCH = 2  # Random 64x64 images in --verify (the network runs at 299x299).


def convert(state_dict: dict[str, np.ndarray], log: Log) -> tuple[Any, dict]:
  """(flax variables, extra metadata) from the torch `state_dict`."""
  variables, ignored = port_convert.apply_table(
      flax_inception.KIND, TABLE, state_dict, checkpoint.flatten(flax_inception.abstract_variables()),
      IGNORED.__contains__)
  log(f"converted {len(TABLE)} tensors of {len(BASIC_CONVS)} BasicConv2d modules into the FID "
      "Inception-v3")
  if ignored:
    log(f"ignored {len(ignored)} tensors not used by the pool3 features: {', '.join(ignored)}")
  return variables, {"ignored_source_keys": ignored}


def torch_reference(state_dict: dict[str, np.ndarray]):
  """port.torch_ref's FIDInceptionV3 with `state_dict` loaded (strict), in eval mode."""
  import torch  # pylint: disable=import-outside-toplevel
  from port.torch_ref import inception as torch_inception  # pylint: disable=import-outside-toplevel

  module = torch_inception.FIDInceptionV3()
  module.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state_dict.items()})
  return module.eval()


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
  """max over images of ||got - want||_2 / ||want||_2 (inf where `want` is all zero)."""
  num = np.linalg.norm((got - want).astype(np.float64), axis=-1)
  den = np.linalg.norm(want.astype(np.float64), axis=-1)
  return float(np.max(np.where(den > 0, num / np.maximum(den, 1e-300), np.inf)))


def max_abs_diffs(state_dict: dict[str, np.ndarray], variables: Any, log: Log,
                  seed: int = 0) -> dict[str, float]:
  """{'pool3_relative': ...}: the port against the torch original on random 64x64 images.

  The pool3 features' error is measured relative to their norm, per image (their scale depends on
  the weights); the port tool's limit (1e-5) applies to that ratio.
  """
  import torch  # pylint: disable=import-outside-toplevel

  reference = torch_reference(state_dict)
  images = np.random.default_rng(seed).random((PARITY_BATCH, 64, 64, 3), dtype=np.float32)
  with torch.inference_mode():
    want = reference(torch.from_numpy(images.transpose(0, 3, 1, 2).copy())).numpy()
  got = flax_inception.features(variables, images)
  return {"pool3_relative": relative_error(got, want)}
