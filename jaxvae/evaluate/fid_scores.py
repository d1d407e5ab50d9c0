"""FID and KID inside --mode=evaluate: Inception features of the inputs, their reconstructions and
as many prior samples, streamed batch by batch into running statistics (jaxvae.fid); and of a
--mode=generate output against the same inputs."""

import warnings
from typing import Any, Callable

import numpy as np

from jaxvae import fid, generated
from jaxvae.nets import inception

SETS = ("real", "reconstructions", "samples")  # Compared: real with each of the others.


class Accumulator:
  """Per-set FeatureSets; batch features are also what the resume cache stores (`fid/<set>`)."""

  def __init__(self, variables: Any):
    self.variables = variables  # The Inception-v3's (jaxvae.nets.inception.load)
    self.sets = {name: fid.FeatureSet(seed=i) for i, name in enumerate(SETS)}

  def batch_features(self, vae, x: np.ndarray, recon: Any, key) -> dict[str, np.ndarray]:
    """{`fid/<set>`: [B, 2048]} for the batch: the inputs, their reconstructions, B samples."""
    images = {"real": x, "reconstructions": np.asarray(recon),
              "samples": np.asarray(vae.sample(len(x), key))}
    return {f"fid/{name}": inception.features(self.variables, images[name]) for name in SETS}

  def update(self, batch: dict[str, np.ndarray]) -> None:
    """Adds the batch's features of each set."""
    for name in SETS:
      self.sets[name].update(batch[f"fid/{name}"])

  def scores(self, log: Callable[[str], None]) -> dict[str, Any]:
    """{"reconstructions": {fid, kid_mean, kid_std}, "samples": {...}, "n": N}; warnings logged."""
    result: dict[str, Any] = {"n": self.sets["real"].n}
    messages: list[str] = []
    for name in SETS[1:]:
      s, said = _scores(self.sets["real"], self.sets[name])
      result[name] = {"fid": s.fid, "kid_mean": s.kid.mean, "kid_std": s.kid.std,
                      "kid_subset_size": s.kid.subset_size}
      messages += said
    result["warnings"] = _logged(messages, log)
    return result


def _scores(real: fid.FeatureSet, fake: fid.FeatureSet) -> tuple[fid.Scores, list[str]]:
  """fid.scores and the messages of the warnings it raised."""
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    s = fid.scores(real, fake)
  return s, [str(w.message) for w in caught]


def _logged(messages: list[str], log: Callable[[str], None]) -> list[str]:
  """Each distinct message once, in order, logged as a warning."""
  messages = list(dict.fromkeys(messages))
  for message in messages:
    log(f"warning: {message}")
  return messages


def generated_scores(variables: Any, generated_dir: str, real_batches, batch_size: int,
                     log: Callable[[str], None]) -> dict[str, Any]:
  """FID and KID of every image a --mode=generate run wrote into `generated_dir` against the
  images of `real_batches` (an iterable of [n, 64, 64, 3] arrays), both streamed, with the
  Inception-v3 `variables`."""
  records = generated.open(generated_dir)
  real, fake = fid.FeatureSet(seed=0), fid.FeatureSet(seed=1)
  for images in real_batches:
    real.add_images(variables, images)
  for start in range(0, len(records), batch_size):
    stop = min(start + batch_size, len(records))
    fake.add_images(variables, np.stack([records[i]["image"] for i in range(start, stop)]))
  s, messages = _scores(real, fake)
  return {"generated": generated_dir, "n_real": s.n_real, "n_generated": s.n_fake, "fid": s.fid,
          "kid_mean": s.kid.mean, "kid_std": s.kid.std, "warnings": _logged(messages, log)}
