"""Post-processing specs: the report's chains as presets, and chains of the stages by name."""

import inspect
import types
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp

from jaxvae.postprocess import levels as lv
from jaxvae.postprocess.color import enhance, enhance_levels
from jaxvae.postprocess.haze import dehaze
from jaxvae.postprocess.report_haze import dehaze_levels
from jaxvae.postprocess.sharpen import unsharp, unsharp_levels
from jaxvae.postprocess.smooth import bilateral, bilateral_levels

Array = jax.Array
Params = Mapping[str, Mapping[str, Any]]

# The stages on [0, 1] float images; each rounds its input to 8-bit levels (quantize=True).
STAGES: Mapping[str, Callable[..., Array]] = {
    "enhance": enhance,
    "dehaze": dehaze,
    "bilateral": bilateral,
    "unsharp": unsharp,
}

# The same stages on int32 level planes, as the presets chain them.
LEVEL_STAGES: Mapping[str, Callable[..., lv.Planes]] = {
    "enhance": enhance_levels,
    "dehaze": dehaze_levels,
    "bilateral": bilateral_levels,
    "unsharp": unsharp_levels,
}

# Figure columns of the stages named in a spec (a preset labels its own steps).
PANELS = {"enhance": "Enhanced", "dehaze": "Dehazed", "bilateral": "Smoothed",
          "unsharp": "Sharpened"}


class Step(NamedTuple):
  """One step of a preset: a stage on 8-bit levels, which it returns as uint8 levels."""
  stage: str  # A LEVEL_STAGES name.
  params: Mapping[str, Any]  # Its keyword arguments.
  source: int = -1  # The step it reads: -1 the previous one, 0 the preset's input, k step k.
  panel: str = ""  # Its column in the report's figure, if any (a spec's last output is "Final").


class Preset(NamedTuple):
  """One of the report's chains, with its conversions: every step returns uint8 levels."""
  entry: str  # "trunc": the input enters as (x * 255).astype(np.uint8); "clip": np.clip(x, 0, 1).
  steps: tuple[Step, ...]


_frozen = types.MappingProxyType
_DEHAZE = _frozen({"window": 15, "omega": 0.95, "t0": 0.1, "top_fraction": 0.001})
_SMOOTH_3 = _frozen({"d": 3, "sigma_color": 75.0, "sigma_space": 75.0})
_KEEP = _frozen({"saturation": 1.0, "contrast": 1.0})  # The notebook's enhance(1, 1): PIL copies.

PRESETS: Mapping[str, Preset] = {
    # functions.py's defaults in the report's order: u8 = trunc(recon); e = enhance(u8);
    # d = trunc(dehaze(e / 255)); s = smooth(d / 255, bilateral, 5); unsharp(s).
    "report": Preset("trunc", (
        Step("enhance", _frozen({"saturation": 2.0, "contrast": 3.0}), panel="Enhanced"),
        Step("dehaze", _DEHAZE, panel="Dehazed"),
        Step("bilateral", _frozen({"d": 5, "sigma_color": 75.0, "sigma_space": 75.0})),
        Step("unsharp", _frozen({"ksize": 5, "sigma": 1.0, "amount": 1.5})),
    )),
    # The notebook's Figure 1 (cells 17, 19, 21): its enhanced panel is a side branch; the
    # dehazed panel dehazes the unenhanced reconstruction.
    "figure1": Preset("trunc", (
        Step("enhance", _frozen({"saturation": 1.5, "contrast": 1.5}), panel="Enhanced"),
        Step("dehaze", _DEHAZE, source=0),
        Step("enhance", _KEEP, panel="Dehazed"),
        Step("bilateral", _SMOOTH_3),
        Step("unsharp", _frozen({"ksize": 5, "sigma": 2.0, "amount": 1.5})),
    )),
    # The notebook's stochastic generations (cells 24, 26): dehaze(clip(recon)) in float32.
    "generations": Preset("clip", (
        Step("dehaze", _DEHAZE, panel="Dehazed"),
        Step("enhance", _KEEP),
        Step("bilateral", _SMOOTH_3),
        Step("unsharp", _frozen({"ksize": 5, "sigma": 1.0, "amount": 4.0})),
    )),
}


def run_preset(name: str, images: Array, every_step: bool = False) -> tuple[Array, ...]:
  """The preset `name` on [B, H, W, 3] images in [0, 1]: (its output,) or every step's output.

  Between steps the images are uint8 levels (int32 planes), as in the report; each output is
  levels / 255 in float32.
  """
  if name not in PRESETS:
    raise ValueError(f"Unknown post-processing preset {name!r}; presets: {', '.join(PRESETS)}.")
  preset = PRESETS[name]
  x = lv.as_images(images, name, channels=3)
  if preset.entry == "trunc":  # uint8 while interleaved: the deinterleaving reads less.
    (u8,) = lv.fence(lv.trunc_levels(x).astype(jnp.uint8))
    results = [lv.fence(*(p.astype(jnp.int32) for p in lv.split(u8)))]
  else:
    results = [lv.fence(*lv.split(jnp.clip(x, 0.0, 1.0)))]
  for step in preset.steps:
    results.append(LEVEL_STAGES[step.stage](results[step.source], **step.params))
  shown = results[1:] if every_step else results[-1:]
  return tuple(lv.from_levels(lv.merge(p)) for p in shown)


def _tokens(spec: str | Sequence[str] | None) -> list[str]:
  """The preset and stage names of a spec, validated."""
  if spec is None:
    return []
  tokens = spec.split(",") if isinstance(spec, str) else list(spec)
  tokens = [t.strip() for t in tokens]
  if tokens in ([""], ["none"]):
    return []
  for token in tokens:
    if token not in PRESETS and token not in STAGES:
      raise ValueError(f"Unknown post-processing stage {token!r} in {spec!r}; stages: "
                       f"{', '.join(STAGES)}; presets: {', '.join(PRESETS)}; or '' / 'none'.")
  return tokens


def parse_spec(spec: str | Sequence[str] | None) -> tuple[str, ...]:
  """Stage names of a spec: presets and stages, comma-separated, or ""/"none"/None for none.

  A preset contributes its steps' stage names, e.g. "report" -> (enhance, dehaze, bilateral,
  unsharp); these name the outputs of `build_pipeline(spec, intermediates=True)`.
  """
  names = []
  for token in _tokens(spec):
    if token in PRESETS:
      names.extend(step.stage for step in PRESETS[token].steps)
    else:
      names.append(token)
  return tuple(names)


def _stage_params(params: Params | None) -> dict[str, dict[str, Any]]:
  """Validates {stage: {argument: value}} against the stage signatures."""
  out = {}
  for stage, kwargs in (params or {}).items():
    if stage not in STAGES:
      raise ValueError(f"Parameters for unknown post-processing stage {stage!r}; stages: "
                       f"{', '.join(STAGES)}.")
    kwargs = dict(kwargs)
    try:
      inspect.signature(STAGES[stage]).bind(None, **kwargs)
    except TypeError as e:
      raise ValueError(f"Bad parameters for post-processing stage {stage!r}: {e}.") from None
    out[stage] = kwargs
  return out


def _chain(spec, params) -> tuple[list[tuple[str, str]], Callable[[Array], list[Array]]]:
  """[(stage name, figure column or "")] of every step of the spec, and images -> their outputs."""
  tokens = _tokens(spec)
  kwargs = _stage_params(params)
  plan = []
  for token in tokens:
    if token in PRESETS:
      plan.extend((s.stage, s.panel) for s in PRESETS[token].steps)
    else:
      plan.append((token, PANELS[token]))

  def run(images: Array) -> list[Array]:
    images = jnp.asarray(images, jnp.float32)
    out = []
    for token in tokens:
      if token in PRESETS:
        out.extend(run_preset(token, images, every_step=True))
      else:
        out.append(STAGES[token](images, **kwargs.get(token, {})))
      images = out[-1]
    return out

  return plan, run


def build_pipeline(spec: str | Sequence[str] | None = "report", params: Params | None = None,
                   intermediates: bool = False) -> Callable[[Array], Any]:
  """images -> images applying the presets and stages of `spec` in order; "" or "none": identity.

  Args:
    spec: see `parse_spec`, e.g. "report", "figure1", "generations", "enhance,unsharp", "none".
    params: keyword overrides of the stages named in the spec, e.g. {"dehaze": {"variant":
      "he2011"}}; stages that are not in the spec may be given (so a config can set them all),
      unknown ones may not. Presets are the report's code and take none.
    intermediates: return the tuple of every step's output (named by `parse_spec`) instead of
      the last.

  Returns:
    A pure function of [B, H, W, C] float32 images in [0, 1], to be jitted or vmapped by the
    caller.
  """
  _, run = _chain(spec, params)

  def pipeline(images: Array) -> Any:
    outputs = run(images)
    if intermediates:
      return tuple(outputs)
    return outputs[-1] if outputs else jnp.asarray(images, jnp.float32)

  return pipeline


class Panels(NamedTuple):
  """The report figure's post-processed columns of a spec."""
  labels: tuple[str, ...]  # e.g. ("Enhanced", "Dehazed", "Final").
  fn: Callable[[Array], tuple[Array, ...]]  # images -> one [B, H, W, C] array per label.


def build_panels(spec: str | Sequence[str] | None = "figure1",
                 params: Params | None = None) -> Panels:
  """The labelled columns of the report's figure for `spec`: every labelled step, then "Final".

  A preset labels its steps (figure1: Enhanced, Dehazed); a stage named in the spec is labelled
  by PANELS; the spec's last output is "Final".
  """
  plan, run = _chain(spec, params)
  if not plan:
    raise ValueError(f"The figure needs post-processing stages; got spec {spec!r}.")
  shown = [i for i, (_, panel) in enumerate(plan[:-1]) if panel]

  def fn(images: Array) -> tuple[Array, ...]:
    outputs = run(images)
    return tuple(outputs[i] for i in shown) + (outputs[-1],)

  return Panels(tuple(plan[i][1] for i in shown) + ("Final",), fn)


def run_stages(images: Array, spec: str | Sequence[str] | None = "report",
               params: Params | None = None) -> list[tuple[str, Array]]:
  """[(stage name, images after that stage), ...] of the chain, e.g. for a per-stage figure."""
  outputs = build_pipeline(spec, params, intermediates=True)(images)
  return list(zip(parse_spec(spec), outputs))
