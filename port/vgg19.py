"""Port of torchvision's VGG19 ImageNet weights (vgg19-dcbb9e9d.pth), up to relu3_1, to flax.

  python -m port --model=vgg19 --source=vgg19-imagenet --out=DIR --verify

The DFC-VAE loss reads relu1_1, relu2_1 and relu3_1, so only the five convolutions before relu3_1
are ported; every other tensor of the file is ignored, by name, in IGNORED (the remaining 11
convolutions of `features` and the three Linear layers of `classifier`).
"""

from typing import Any, Callable

import numpy as np

from jaxvae import checkpoint
from jaxvae.nets import vgg19 as flax_vgg19
from port import convert as port_convert
from port.tables import common

Log = Callable[[str], None]

# flax conv <- torchvision `features` index, up to relu3_1.
PORTED = (("conv1_1", 0), ("conv1_2", 2), ("conv2_1", 5), ("conv2_2", 7), ("conv3_1", 10))
TABLE = [entry for flax_name, index in PORTED
         for entry in common.conv(flax_name, f"features.{index}")]
UNUSED_CONVS = (12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34)  # conv3_2 ... conv5_4
IGNORED = tuple([f"features.{i}.{p}" for i in UNUSED_CONVS for p in ("weight", "bias")]
                + [f"classifier.{i}.{p}" for i in (0, 3, 6) for p in ("weight", "bias")])
PARITY_BATCH = 4  # Random 64x64 images in --verify.


def convert(state_dict: dict[str, np.ndarray], log: Log) -> tuple[Any, dict]:
  """(flax variables, extra metadata) from the torch `state_dict`."""
  variables, ignored = port_convert.apply_table(
      flax_vgg19.KIND, TABLE, state_dict, checkpoint.flatten(flax_vgg19.abstract_variables()),
      IGNORED.__contains__)
  log(f"converted {len(TABLE)} tensors (features.0 to features.10, up to relu3_1) into VGG19")
  if ignored:
    log(f"ignored {len(ignored)} tensors after relu3_1 and of the classifier: "
        f"{', '.join(ignored)}")
  return variables, {"ignored_source_keys": ignored}


def torch_reference(state_dict: dict[str, np.ndarray]):
  """port.torch_ref's VGG19Features with the ported tensors of `state_dict` loaded."""
  import torch  # pylint: disable=import-outside-toplevel
  from port.torch_ref import vgg19 as torch_vgg19  # pylint: disable=import-outside-toplevel

  module = torch_vgg19.VGG19Features()
  used = {e.torch_key for e in TABLE}
  missing, unexpected = module.load_state_dict(
      {k: torch.from_numpy(np.array(v)) for k, v in state_dict.items() if k in used},
      strict=False)
  assert not unexpected and not used & set(missing), (missing, unexpected)
  return module.eval()


def max_abs_diffs(state_dict: dict[str, np.ndarray], variables: Any, log: Log,
                  seed: int = 0) -> dict[str, float]:
  """The port against the torch original on random 64x64 images in [0, 1], scale-free.

  {relu1_1, relu2_1, relu3_1}_relative: max |flax - torch| / max |torch| of each layer;
  loss_relative: max over images of |flax - torch| / |torch| of feature_perceptual_loss.
  The port tool's limit (1e-5) applies to these ratios (the features' scale depends on the
  weights).
  """
  import torch  # pylint: disable=import-outside-toplevel

  reference = torch_reference(state_dict)
  rng = np.random.default_rng(seed)
  x = rng.random((PARITY_BATCH, 64, 64, 3), dtype=np.float32)
  y = rng.random((PARITY_BATCH, 64, 64, 3), dtype=np.float32)
  to_torch = lambda a: torch.from_numpy(a.transpose(0, 3, 1, 2).copy())
  with torch.inference_mode():
    fx, fy = reference(to_torch(x)), reference(to_torch(y))
  got = flax_vgg19.features(variables, x)
  diffs = {}
  for name in flax_vgg19.LAYERS:
    want = fx[name].numpy().transpose(0, 2, 3, 1)
    diffs[f"{name}_relative"] = _ratio(np.abs(np.asarray(getattr(got, name)) - want).max(),
                                       np.abs(want).max())
  loss_t = sum(((fx[n] - fy[n]) ** 2).mean(dim=(1, 2, 3)) for n in flax_vgg19.LAYERS).numpy()
  loss = np.asarray(flax_vgg19.feature_perceptual_loss(variables, x, y))
  diffs["loss_relative"] = max(_ratio(abs(a - b), abs(b)) for a, b in zip(loss, loss_t))
  return diffs


def _ratio(num: float, den: float) -> float:
  """num / den; 0 for 0 / 0, inf for a nonzero difference from an all-zero reference."""
  if den == 0:
    return 0.0 if num == 0 else float("inf")
  return float(num / den)
