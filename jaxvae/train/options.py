"""Training options: a typed, frozen dataclass, checked before any work is done."""

import dataclasses
import os
from typing import Any, Mapping

from jaxvae import models
from jaxvae.train import losses, recipes, step

LOSSES = ("original", "perceptual")
SCHEDULES = ("original", "constant", "plateau")


class OptionsError(ValueError):
  """A training option is missing, of the wrong type or out of range."""


@dataclasses.dataclass(frozen=True)
class TrainOptions:
  """What `train_and_evaluate` does. None means "as the original trained" (see recipes.py).

  Attributes:
    model: registry name (vanilla, betavae, dfcvae, pvae).
    data: a CelebA root, `tfds[:name]`, or comma-separated files, folders, globs, `bundled:` names.
    validation_data: the same kinds; "" = the CelebA validation split, or `data` itself for files.
    init_from: "" trains from scratch; else a ported checkpoint directory, a training export, or
      a published name (fine-tuning). Its model must be `model`.
    latent_dim: latent size from scratch (0 = the model's default); ignored with init_from.
    steps: optimizer steps in all (a resumed run continues up to this number).
    batch_size: global batch (all devices, all hosts); None = the original's.
    learning_rate: None = the original's.
    beta: KL weight; None = the original's (1, the PVAE 10, the perceptual loss 1).
    alpha: reconstruction weight (PVAE, perceptual loss); None = the original's (1.8, 0.5).
    loss: `original`, or `perceptual` (Hou et al.: VGG19 feature MSE, needs jaxvae.nets.vgg19).
    perceptual_net: the VGG19 weights (published name or ported directory) for `perceptual`.
    schedule: `original` (the PVAE's ReduceLROnPlateau, constant otherwise), `constant`, `plateau`.
    plateau_factor, plateau_patience, plateau_min_delta: ReduceLROnPlateau's arguments; patience
      counts evaluations (eval_every steps; the original evaluates once per epoch).
    shuffle: None = the original's (the PVAE notebook does not shuffle).
    flip: random horizontal flips.
    balance_attribute: a CelebA attribute (e.g. Pale_Skin): its two groups drawn equally often.
    max_images: use only the first N training images (0 = all; the Vanilla VAE used 80,000).
    eval_every: steps between validation passes; 0 = once per epoch.
    eval_images: validation images per pass (0 = the whole split).
    checkpoint_every, keep: Orbax checkpoints every N steps, the last K kept.
    log_every, image_every: console/TensorBoard scalars, reconstruction and sample grids.
    seed: data order, flips, sampling noise and from-scratch initialisation.
    compute_dtype: float32, or bfloat16 (parameters kept in float32).
    num_threads: image decoding threads (0 = one per core, at most 8).
  """
  model: str
  data: str = ""
  validation_data: str = ""
  init_from: str = ""
  latent_dim: int = 0
  steps: int = 1000
  batch_size: int | None = None
  learning_rate: float | None = None
  beta: float | None = None
  alpha: float | None = None
  loss: str = "original"
  perceptual_net: str = "vgg19-imagenet"
  schedule: str = "original"
  plateau_factor: float = 0.2
  plateau_patience: int = 2
  plateau_min_delta: float = 1e-4
  shuffle: bool | None = None
  flip: bool = False
  balance_attribute: str = ""
  max_images: int = 0
  eval_every: int = 0
  eval_images: int = 1000
  checkpoint_every: int = 500
  keep: int = 3
  log_every: int = 50
  image_every: int = 500
  seed: int = 0
  compute_dtype: str = "float32"
  num_threads: int = 0

  def __post_init__(self):
    problems = _problems(self)
    if problems:
      raise OptionsError("invalid training options:\n  " + "\n  ".join(problems))

  @property
  def recipe(self) -> recipes.Recipe:
    return recipes.get(self.model)

  def resolved_batch_size(self) -> int:
    return self.batch_size or self.recipe.batch_size

  def resolved_learning_rate(self) -> float:
    return self.recipe.learning_rate if self.learning_rate is None else self.learning_rate

  def resolved_shuffle(self) -> bool:
    return self.recipe.shuffle if self.shuffle is None else self.shuffle

  def uses_plateau(self) -> bool:
    return self.schedule == "plateau" or (self.schedule == "original" and self.recipe.plateau)

  def loss_spec(self, feature_loss: losses.FeatureLoss | None = None) -> losses.Spec:
    r = self.recipe
    if self.loss == "perceptual":
      return losses.Spec("perceptual",
                         recipes.PERCEPTUAL_KL_WEIGHT if self.beta is None else self.beta,
                         recipes.PERCEPTUAL_WEIGHT if self.alpha is None else self.alpha,
                         feature_loss)
    return losses.Spec(r.loss, r.beta if self.beta is None else self.beta,
                       r.alpha if self.alpha is None else self.alpha)

  @classmethod
  def from_config(cls, config: Mapping[str, Any], model: str | None = None) -> "TrainOptions":
    """From a dict or ml_collections ConfigDict (`config.train`); `model` fills a missing model."""
    values = dict(config.items() if hasattr(config, "items") else config)
    if model is not None and not values.get("model"):
      values["model"] = model
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
      raise OptionsError(f"unknown training option(s) {', '.join(unknown)}; known: "
                         + ", ".join(fields))
    if "model" not in values:
      raise OptionsError("training options need `model`")
    problems = []
    for name, value in values.items():
      problem = _type_problem(name, fields[name].type, value)
      if problem:
        problems.append(problem)
    if problems:
      raise OptionsError("invalid training options:\n  " + "\n  ".join(problems))
    values = {k: (float(v) if fields[k].type in (float, float | None) and isinstance(v, int)
                  and not isinstance(v, bool) else v) for k, v in values.items()}
    return cls(**values)


_TYPES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def _type_problem(name: str, annotation, value) -> str | None:
  optional = annotation in (int | None, float | None, bool | None)
  base = {int | None: int, float | None: float, bool | None: bool}.get(annotation, annotation)
  if value is None:
    return None if optional else f"{name} must be {_TYPES[base]}, got None"
  ok = (isinstance(value, bool) if base is bool else
        isinstance(value, int) and not isinstance(value, bool) if base is int else
        isinstance(value, (int, float)) and not isinstance(value, bool) if base is float else
        isinstance(value, str))
  return None if ok else f"{name} must be {_TYPES[base]}, got {value!r}"


def _problems(o: TrainOptions) -> list[str]:
  """Every range and consistency problem, by field name."""
  p = []
  if o.model not in models.MODELS:
    return [f"model must be one of {', '.join(models.MODELS)}, got {o.model!r}"]
  if not o.data.strip():
    p.append("data is empty: give a CelebA root, tfds, or image files/folders/globs/bundled: "
             "names (e.g. bundled:astronaut,bundled:grace_hopper)")
  positive = {"steps": o.steps, "checkpoint_every": o.checkpoint_every, "keep": o.keep,
              "log_every": o.log_every, "image_every": o.image_every}
  p += [f"{k} must be >= 1, got {v}" for k, v in positive.items() if v < 1]
  non_negative = {"latent_dim": o.latent_dim, "max_images": o.max_images,
                  "eval_every": o.eval_every, "eval_images": o.eval_images,
                  "num_threads": o.num_threads, "seed": o.seed}
  p += [f"{k} must be >= 0, got {v}" for k, v in non_negative.items() if v < 0]
  if o.batch_size is not None and o.batch_size < 1:
    p.append(f"batch_size must be >= 1, got {o.batch_size}")
  for k in ("learning_rate", "beta", "alpha"):
    v = getattr(o, k)
    if v is not None and not (v > 0 if k == "learning_rate" else v >= 0):
      p.append(f"{k} must be {'> 0' if k == 'learning_rate' else '>= 0'}, got {v}")
  if o.loss not in LOSSES:
    p.append(f"loss must be one of {', '.join(LOSSES)}, got {o.loss!r}")
  if o.schedule not in SCHEDULES:
    p.append(f"schedule must be one of {', '.join(SCHEDULES)}, got {o.schedule!r}")
  if not 0 < o.plateau_factor < 1:
    p.append(f"plateau_factor must lie in (0, 1), got {o.plateau_factor}")
  if o.plateau_patience < 1 or o.plateau_min_delta < 0:
    p.append("plateau_patience must be >= 1 and plateau_min_delta >= 0")
  if o.compute_dtype not in step.COMPUTE_DTYPES:
    p.append(f"compute_dtype must be one of {', '.join(step.COMPUTE_DTYPES)}, "
             f"got {o.compute_dtype!r}")
  if o.init_from and not o.init_from.strip():
    p.append("init_from is blank")
  if o.init_from and os.path.sep in o.init_from and not os.path.isdir(o.init_from):
    p.append(f"init_from {o.init_from} is not a directory (give a ported checkpoint directory, "
             "a training export or a published name)")
  return p
