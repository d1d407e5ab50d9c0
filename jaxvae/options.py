"""The mode list and the config, validated once before any work into typed, frozen option objects.

`validate(config, mode)` checks every field the mode reads (types, ranges, seeds that fit the key
type, names that exist) and returns a `Run`: the shared `Common` fields plus the mode's own
section (`Sample`, `Interpolate`, `Edit`, `Evaluate`, ...). Imports no jax.
"""

import dataclasses
from typing import Any, Mapping

MODES = ("reconstruct", "variations", "sample", "interpolate", "edit", "enhance", "evaluate",
         "generate", "traverse", "train")
SAMPLING_RULES = ("per_sample", "pvae_shared")
ALIGN_MODES = ("auto", "celeba", "off")
INTERPOLATIONS = ("linear", "slerp")
TRAVERSAL_STD = ("prior", "posterior")  # The std a traversal steps in.
LPIPS_NETS = ("alexnet", "vgg16")
MAX_SEED = 2**32 - 1  # jax.random.key takes a uint32 seed (without jax_enable_x64).
# Images a single-result mode draws and holds at once (inputs x variations); larger runs belong
# to --mode=generate, which streams.
MAX_GRID_IMAGES = 4096


class ConfigError(ValueError):
  """A config field has a wrong type or value."""


@dataclasses.dataclass(frozen=True)
class Common:
  """Fields several modes read."""
  model: str
  model_fields: tuple[tuple[str, Any], ...]  # shape-free module fields, e.g. output_activation
  checkpoint: str
  input: str
  align: str  # auto | celeba | off (jaxvae.data.load_faces)
  celeba: str
  split: str
  seed: int
  postprocess: str
  chunk_size: int
  batch_size: int
  num_variations: int
  temperature: float  # 0 when deterministic
  input_noise_std: float
  sampling_rule: str


@dataclasses.dataclass(frozen=True)
class Sample:
  num_samples: int


@dataclasses.dataclass(frozen=True)
class Interpolate:
  method: str
  steps: int


@dataclasses.dataclass(frozen=True)
class Edit:
  with_images: str
  without_images: str
  strengths: tuple[float, ...]
  attribute: str  # A CelebA attribute: its vector over config.celeba replaces the image pair.
  split: str  # The CelebA split the attribute vector is computed on.
  max_images: int  # Images of that split it uses; 0 = all.


@dataclasses.dataclass(frozen=True)
class Traverse:
  num_dims: int  # Dimensions per input, largest KL first; 0 = all.
  values: tuple[float, ...]
  std: str  # "prior" (1) or "posterior" (the input's own exp(logvar / 2)).


@dataclasses.dataclass(frozen=True)
class Evaluate:
  checkpoints: tuple[str, ...]  # Models compared with config.checkpoint.
  max_images: int
  lpips_net: str  # "" = no LPIPS
  bootstrap: int
  fid: bool  # FID and KID of reconstructions and prior samples against the inputs
  fid_weights: str  # Inception-v3 weights: a published name or a ported directory
  generated: str  # A --mode=generate output scored (FID, KID) against the inputs; "" = none


@dataclasses.dataclass(frozen=True)
class Generate:
  shard_size: int  # Records per shard (whole sources: shard_size // num_variations of them).
  format: str  # "array_record" or "png"
  image_encoding: str  # Images in ArrayRecord records: "raw" uint8 or "png".
  save_latents: bool
  max_images: int  # 0 = every source
  workers: int  # Reading workers; 0 = one per core.
  reader: str  # "auto", "processes" or "threads"
  distributed: str  # "" (one process), "auto" or "HOST:PORT,NUM_PROCESSES,PROCESS_ID"


@dataclasses.dataclass(frozen=True)
class Run:
  mode: str
  common: Common
  section: Any  # The mode's own options, or None.


def _get(config: Mapping, path: str) -> Any:
  node = config
  for part in path.split("."):
    try:
      node = node[part]
    except (KeyError, AttributeError, TypeError):
      raise ConfigError(f"config.{path} is missing; the model configs in configs/ define it") from None
  return node


def _int(config, path: str, lo: int | None = None, hi: int | None = None) -> int:
  value = _get(config, path)
  if isinstance(value, bool) or not isinstance(value, int):
    raise ConfigError(f"config.{path} must be an integer, got {value!r}")
  if (lo is not None and value < lo) or (hi is not None and value > hi):
    bounds = f">= {lo}" if hi is None else f"in [{lo}, {hi}]" if lo is not None else f"<= {hi}"
    raise ConfigError(f"config.{path} must be {bounds}, got {value}")
  return value


def _float(config, path: str, lo: float | None = None) -> float:
  value = _get(config, path)
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    raise ConfigError(f"config.{path} must be a number, got {value!r}")
  value = float(value)
  if value != value or value in (float("inf"), float("-inf")):
    raise ConfigError(f"config.{path} must be finite, got {value}")
  if lo is not None and value < lo:
    raise ConfigError(f"config.{path} must be >= {lo}, got {value}")
  return value


def _choice(config, path: str, choices: tuple[str, ...]) -> str:
  value = _get(config, path)
  if value not in choices:
    raise ConfigError(f"config.{path} must be one of {', '.join(map(repr, choices))}, "
                      f"got {value!r}")
  return value


def _str(config, path: str) -> str:
  value = _get(config, path)
  if not isinstance(value, str):
    raise ConfigError(f"config.{path} must be a string, got {value!r}")
  return value


def _postprocess(config) -> str:
  spec = _str(config, "postprocess")
  from jaxvae import postprocess  # pylint: disable=import-outside-toplevel  (imports jax)
  try:
    postprocess.parse_spec(spec)
  except ValueError as e:
    raise ConfigError(f"config.postprocess: {e}") from None
  return spec


def common(config: Mapping) -> Common:
  """The top-level fields, checked."""
  from jaxvae import models  # pylint: disable=import-outside-toplevel  (imports jax)
  name = _choice(config, "model.name", tuple(models.MODELS))
  fields = tuple(sorted((k, tuple(v) if isinstance(v, list) else v)
                        for k, v in dict(_get(config, "model")).items() if k != "name"))
  deterministic = _get(config, "deterministic")
  if not isinstance(deterministic, bool):
    raise ConfigError(f"config.deterministic must be True or False, got {deterministic!r}")
  temperature = _float(config, "temperature", lo=0.0)
  return Common(
      model=name, model_fields=fields, checkpoint=_str(config, "checkpoint"),
      input=_str(config, "input"), align=_choice(config, "align", ALIGN_MODES),
      celeba=_str(config, "celeba"), split=_str(config, "split"),
      seed=_int(config, "seed", 0, MAX_SEED), postprocess=_postprocess(config),
      chunk_size=_int(config, "chunk_size", 0), batch_size=_int(config, "batch_size", 0, 65536),
      num_variations=_int(config, "num_variations", 1, MAX_GRID_IMAGES),
      temperature=0.0 if deterministic else temperature,
      input_noise_std=_float(config, "input_noise_std", lo=0.0),
      sampling_rule=_choice(config, "sampling_rule", SAMPLING_RULES))


def _section(config: Mapping, mode: str, shared: Common) -> Any:
  if mode == "sample":
    return Sample(_int(config, "sample.num_samples", 1, MAX_GRID_IMAGES))
  if mode == "interpolate":
    return Interpolate(_choice(config, "interpolate.method", INTERPOLATIONS),
                       _int(config, "interpolate.steps", 2, 1024))
  if mode == "edit":
    strengths = _get(config, "edit.strengths")
    strengths = (strengths,) if isinstance(strengths, (int, float)) else tuple(strengths)
    if not strengths or not all(isinstance(s, (int, float)) and not isinstance(s, bool)
                                for s in strengths):
      raise ConfigError(f"config.edit.strengths must be a non-empty list of numbers, got "
                        f"{strengths!r}")
    from jaxvae import celeba  # pylint: disable=import-outside-toplevel  (no jax; names only)
    attribute = _str(config, "edit.attribute")
    if attribute:
      _choice(config, "edit.attribute", celeba.ATTR_NAMES)
      if not shared.celeba:
        raise ConfigError("config.edit.attribute needs CelebA for its attribute vector: set "
                          "config.celeba (a CelebA root or tfds)")
    return Edit(_str(config, "edit.with_images"), _str(config, "edit.without_images"),
                tuple(float(s) for s in strengths), attribute,
                _choice(config, "edit.split", (*celeba.SPLITS, celeba.ALL)),
                _int(config, "edit.max_images", 0))
  if mode == "traverse":
    values = _get(config, "traverse.values")
    values = tuple(values) if isinstance(values, (tuple, list)) else (values,)
    if not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                             for v in values):
      raise ConfigError(f"config.traverse.values must be a non-empty list of numbers, got "
                        f"{values!r}")
    return Traverse(_int(config, "traverse.num_dims", 0, 4096), tuple(float(v) for v in values),
                    _choice(config, "traverse.std", TRAVERSAL_STD))
  if mode == "evaluate":
    if shared.num_variations < 2:
      raise ConfigError("--mode=evaluate needs config.num_variations >= 2 for the diversity "
                        f"measures, got {shared.num_variations}")
    net = _str(config, "evaluate.lpips_net")
    if net not in ("",) + LPIPS_NETS:
      raise ConfigError(f"config.evaluate.lpips_net must be '' or one of {LPIPS_NETS}, got "
                        f"{net!r}")
    checkpoints = tuple(c.strip() for c in _str(config, "evaluate.checkpoints").split(",")
                        if c.strip())
    use_fid = _get(config, "evaluate.fid")
    if not isinstance(use_fid, bool):
      raise ConfigError(f"config.evaluate.fid must be True or False, got {use_fid!r}")
    return Evaluate(checkpoints, _int(config, "evaluate.max_images", 0),
                    net, _int(config, "evaluate.bootstrap", 0, 1_000_000), use_fid,
                    _str(config, "evaluate.fid_weights"), _str(config, "evaluate.generated"))
  if mode == "generate":
    return _generate(config, shared)
  if mode == "train":
    from jaxvae.train import options as train  # pylint: disable=import-outside-toplevel
    try:
      return train.TrainOptions.from_config(_get(config, "train"), model=shared.model)
    except train.OptionsError as e:
      raise ConfigError(f"config.train: {e}") from None
  return None


def _generate(config: Mapping, shared: Common) -> Generate:
  shard_size = _int(config, "generate.shard_size", 1)
  if shard_size < shared.num_variations:
    raise ConfigError(f"config.generate.shard_size ({shard_size}) must be at least "
                      f"config.num_variations ({shared.num_variations}): a shard holds every "
                      "variation of its sources")
  save_latents = _get(config, "generate.save_latents")
  if not isinstance(save_latents, bool):
    raise ConfigError(f"config.generate.save_latents must be True or False, got {save_latents!r}")
  distributed = _str(config, "generate.distributed")
  parts = distributed.split(",")
  if distributed not in ("", "auto") and not (
      len(parts) == 3 and ":" in parts[0] and all(p.strip().isdigit() for p in parts[1:])):
    raise ConfigError("config.generate.distributed must be '', 'auto' or "
                      f"'HOST:PORT,NUM_PROCESSES,PROCESS_ID', got {distributed!r}")
  return Generate(shard_size, _choice(config, "generate.format", ("array_record", "png")),
                  _choice(config, "generate.image_encoding", ("raw", "png")), save_latents,
                  _int(config, "generate.max_images", 0), _int(config, "generate.workers", 0, 256),
                  _choice(config, "generate.reader", ("auto", "processes", "threads")),
                  distributed)


def _missing_checkpoint(model: str) -> ConfigError:
  hint = ""
  if model == "pvae":
    hint = (". The PVAE's weights exist only as a Kaggle notebook's output; two routes to a "
            "checkpoint:\n  1. port the notebook's Keras weights: python -m port --model=pvae "
            "--source=WEIGHTS.weights.h5 --out=ckpt/pvae --verify, then "
            "--config.checkpoint=ckpt/pvae\n  2. train one by the original's recipe on CelebA: "
            "python main.py --config=configs/pvae.py --mode=train --workdir=runs/pvae "
            "--config.train.data=/path/to/celeba, then --config.checkpoint=runs/pvae/export "
            "(README: Training)")
  return ConfigError("config.checkpoint is empty: pass --config.checkpoint=DIR (a directory "
                     "written by `python -m port` or --mode=train) or a published name" + hint)


def validate(config: Mapping, mode: str) -> Run:
  """Every field `mode` reads, checked; raises ConfigError naming the first bad field."""
  if mode not in MODES:
    raise ConfigError(f"unknown mode {mode!r}; one of {', '.join(MODES)}")
  shared = common(config)
  if mode != "train" and not shared.checkpoint:
    raise _missing_checkpoint(shared.model)
  return Run(mode, shared, _section(config, mode, shared))
