"""The evaluation report's post-processing (enhance, dehaze, smooth, sharpen), batched in JAX.

- `PRESETS`: the report's own chains, with its uint8 conversions (truncation), equal to its code
  run image by image: "report" (functions.py's defaults in the report's order), "figure1" (the
  notebook's Figure 1) and "generations" (its stochastic generations). See pipeline.py.
- `STAGES`: enhance, dehaze, bilateral, unsharp on [0, 1] float images, each rounding its input
  to 8-bit levels (quantize=True) or working on floats; `LEVEL_STAGES`: the same on int32 level
  planes, as the presets chain them.
- Specs chain both by name ("report", "enhance,unsharp", "report,unsharp"): `parse_spec`,
  `build_pipeline` (a pure, jittable function of [B, H, W, C] float32 images in [0, 1]),
  `run_stages`, and `build_panels` for the report figure's labelled columns.
"""

from jaxvae.postprocess.color import enhance, enhance_levels
from jaxvae.postprocess.haze import atmospheric_light, dark_channel, dehaze, guided_filter
from jaxvae.postprocess.levels import from_levels, to_levels, trunc_levels
from jaxvae.postprocess.pipeline import (LEVEL_STAGES, PANELS, PRESETS, STAGES, Panels, Preset,
                                         Step, build_panels, build_pipeline, parse_spec,
                                         run_preset, run_stages)
from jaxvae.postprocess.report_haze import dehaze_levels
from jaxvae.postprocess.sharpen import unsharp, unsharp_levels
from jaxvae.postprocess.smooth import bilateral, bilateral_levels

__all__ = [
    "LEVEL_STAGES", "PANELS", "PRESETS", "STAGES", "Panels", "Preset", "Step",
    "atmospheric_light", "bilateral", "bilateral_levels", "build_panels", "build_pipeline",
    "dark_channel", "dehaze", "dehaze_levels", "enhance", "enhance_levels", "from_levels",
    "guided_filter", "parse_spec", "run_preset", "run_stages", "to_levels", "trunc_levels",
    "unsharp", "unsharp_levels",
]
