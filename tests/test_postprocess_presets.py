"""The report's chains as JAX presets agree with the report's own code, run per image on real
faces; specs, panels and their errors."""

import functools
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import postprocess_reference as ref
import pytest

from jaxvae import checkpoint, postprocess
from jaxvae.postprocess import levels

LEVEL = 1.001  # 1 level of 255, with slack for k / 255 in float32.
PRESETS = ("report", "figure1", "generations")
STAGE_DEFAULTS = ("enhance", "dehaze", "bilateral", "unsharp")


@functools.cache
def _chain(name: str):
  return jax.jit(postprocess.build_pipeline(name, intermediates=True))


def _reconstruct(model, variables, x, key, variations: int):
  """decode(mean) and decode(mean + exp(logvar / 2) eps) of a Beta-VAE: [(1 + v) B, 64, 64, 3]."""
  mean, logvar = model.apply(variables, x, method=model.encode)
  eps = jax.random.normal(key, (variations,) + mean.shape)
  z = jnp.concatenate([mean[None], mean + jnp.exp(logvar / 2) * eps]).reshape(-1, mean.shape[-1])
  return np.asarray(model.apply(variables, z, method=model.decode), np.float32)


@pytest.fixture(scope="module")
def faces(betavae_recons, betavae_l200, ported_dir):
  """Real-face model outputs, float32 [68, 64, 64, 3] in [0, 1]: the l200 reconstructions of the
  bundled portraits, and 8 crops of skimage's astronaut and matplotlib's grace_hopper at several
  scales, reconstructed by the real l200 and l32 Beta-VAEs, with 3 posterior variations each."""
  crops = jnp.asarray(ref.face_crops(8, seed=11))
  l32 = checkpoint.load(ported_dir("l32-100.pt"))
  out = [np.asarray(betavae_recons, np.float32)]
  for i, loaded in enumerate((betavae_l200, l32)):
    out.append(_reconstruct(loaded.model, loaded.variables, crops, jax.random.key(i), 3))
  return np.concatenate(out)


def _compare(name: str, x: np.ndarray) -> list[np.ndarray]:
  """|JAX - reference| on the 0-255 scale for every step of the preset `name`."""
  outputs = _chain(name)(x)
  expected = [np.stack(s) for s in zip(*[ref.CHAINS[name](im, True) for im in x])]
  assert len(outputs) == len(expected) == len(postprocess.PRESETS[name].steps)
  return [np.abs(np.asarray(o, np.float64) - e) * 255 for o, e in zip(outputs, expected)]


def _check_final(err: np.ndarray, name: str, where: str) -> None:
  """The issue's bar: within 2 levels on 99.9% of values, 8 anywhere (float32 may flip a rare
  truncation that later stages amplify); and unsharp's own bound: a 1-level change of its input
  moves its output by at most 1 + 2 amount levels (4 at the report's amount 1.5)."""
  amount = postprocess.PRESETS[name].steps[-1].params["amount"]
  assert np.mean(err > 2.001) <= 1e-3, f"{where}: {np.mean(err > 2.001):.2e} over 2 levels"
  assert err.max() <= min(8, 1 + 2 * amount) + 1e-3, f"{where}: {err.max():.0f} levels"


@pytest.mark.parametrize("name", PRESETS)
def test_preset_matches_the_report_on_real_faces(faces, name):
  """Every step against the report's code, image by image, truncation included.

  Enhance (PIL's integer arithmetic) and dehaze with its truncation (numpy's float64 or float32
  operations, in order) are bit-exact. OpenCV's bilateralFilter sums through its IPP HAL in an
  order we cannot reproduce: where a weighted mean is within float32 error of k + 0.5 the two
  round apart, so bilateral may be 1 level off (measured ~5e-6 of values on face crops, 0 here).
  Unsharp turns a 1-level change into up to 1 + 2 amount levels (4 at the report's 1.5, 9 at
  the generations' 4); the result must meet the issue's bar.
  """
  steps = postprocess.PRESETS[name].steps
  for step, err in zip(steps, _compare(name, faces)):
    where = f"{name} step {step.stage}"
    if step.stage in ("enhance", "dehaze"):
      assert err.max() < 1e-3, f"{where}: {err.max():.3f} levels, {np.mean(err > 1e-3):.2e}"
    elif step.stage == "bilateral":
      assert err.max() <= LEVEL, f"{where}: {err.max():.3f} levels"
  _check_final(err, name, name)
  assert np.mean(err > LEVEL) <= 1e-4, f"{name}: {np.mean(err > LEVEL):.2e} over 1 level"


@pytest.mark.parametrize("name", PRESETS)
def test_preset_matches_the_report_on_stress_images(name):
  """Ties everywhere (flat and plateaued dark channels), saturation, black and white, noise."""
  x = ref.stress_images()
  errs = _compare(name, x)
  for step, err in zip(postprocess.PRESETS[name].steps, errs):
    if step.stage in ("enhance", "dehaze"):
      assert err.max() < 1e-3, f"{name} step {step.stage}: {err.max():.3f} levels"
  _check_final(errs[-1], name, f"{name} stress")


def test_report_preset_on_noise_and_oblong_crops():
  """Uniform noise (every colour difference), and non-square crops (2240 pixels: A averages 2)."""
  noise = np.random.default_rng(0).random((4, 64, 64, 3), dtype=np.float32)
  oblong = np.ascontiguousarray(ref.face_crops(4, seed=2)[:, 8:48, 4:60])
  for where, x in (("noise", noise), ("oblong", oblong)):
    errs = _compare("report", x)
    assert max(errs[0].max(), errs[1].max()) < 1e-3, f"{where}: enhance or dehaze differ"
    assert errs[2].max() <= LEVEL, f"{where}: bilateral {errs[2].max():.3f} levels"
    _check_final(errs[-1], "report", f"report {where}")


def test_report_preset_is_the_reports_chain_of_stages(faces):
  """The report preset is trunc, then the stages at the report's parameters, with trunc after
  dehaze: its steps equal the stage functions (which round) applied to truncated inputs."""
  x = faces[:6]
  steps = _chain("report")(x)
  trunc = lambda v: postprocess.from_levels(postprocess.trunc_levels(v))
  np.testing.assert_array_equal(steps[0], postprocess.enhance(trunc(x), 2.0, 3.0))
  np.testing.assert_array_equal(steps[2], postprocess.bilateral(steps[1], 5, 75.0, 75.0))
  np.testing.assert_array_equal(steps[3], postprocess.unsharp(steps[2], 5, 1.0, 1.5))


def test_report_preset_batch_equals_per_image(faces):
  chain = _chain("report")
  batched = np.asarray(chain(faces)[-1])
  for i in (0, 30, 65):
    np.testing.assert_array_equal(np.asarray(chain(faces[i:i + 1])[-1]), batched[i:i + 1])


def test_dehaze_with_x64_enabled(faces):
  """The float64 dehaze runs inside a scoped x64 switch; a process with x64 on gets the same."""
  u = jnp.asarray(postprocess.trunc_levels(faces[:4]))
  dehaze = lambda v: levels.merge(postprocess.dehaze_levels(levels.split(v)))
  expected = np.asarray(jax.jit(dehaze)(u))
  with jax.enable_x64(True):
    got = np.asarray(jax.jit(dehaze)(u))
  np.testing.assert_array_equal(got, expected)


# Specs, panels and parameters.


def test_parse_spec():
  assert postprocess.parse_spec("report") == STAGE_DEFAULTS
  assert postprocess.parse_spec(" enhance , unsharp ") == ("enhance", "unsharp")
  assert postprocess.parse_spec(["dehaze"]) == ("dehaze",)
  assert postprocess.parse_spec("report,unsharp") == STAGE_DEFAULTS + ("unsharp",)
  assert postprocess.parse_spec("figure1") == ("enhance", "dehaze", "enhance", "bilateral",
                                               "unsharp")
  assert postprocess.parse_spec("generations") == ("dehaze", "enhance", "bilateral", "unsharp")
  for off in ("", "none", None):
    assert postprocess.parse_spec(off) == ()
  for bad in ("sharpen", "enhance,,unsharp", "Report", "enhance,none", "figure2"):
    with pytest.raises(ValueError, match="Unknown post-processing stage"):
      postprocess.parse_spec(bad)


def test_presets_spell_out_their_parameters():
  """Every step names a stage and binds its kernel; the notebook's parameters (MODELS.md)."""
  for name, preset in postprocess.PRESETS.items():
    assert preset.entry in ("trunc", "clip"), name
    for i, step in enumerate(preset.steps, start=1):
      inspect.signature(postprocess.LEVEL_STAGES[step.stage]).bind(None, **step.params)
      assert -1 <= step.source < i, name
      if preset.entry == "clip" and (step.source == 0 or i == 1):
        assert step.stage == "dehaze", f"{name}: only dehaze reads float images"
  steps = postprocess.PRESETS["figure1"].steps
  assert dict(steps[0].params) == {"saturation": 1.5, "contrast": 1.5}
  assert steps[1].source == 0  # The unenhanced reconstruction.
  assert steps[3].params["d"] == 3 and steps[4].params["sigma"] == 2.0
  assert postprocess.PRESETS["generations"].steps[-1].params["amount"] == 4.0


def test_build_pipeline_params(faces):
  import ml_collections  # pylint: disable=import-outside-toplevel  (configs pass ConfigDicts)
  x = faces[:3]
  params = ml_collections.ConfigDict({"dehaze": {"variant": "he2011", "omega": 0.8},
                                      "unsharp": {"amount": 0.5}})
  got = postprocess.build_pipeline("dehaze", params)(x)
  np.testing.assert_array_equal(got, postprocess.dehaze(x, variant="he2011", omega=0.8))
  with pytest.raises(ValueError, match="unknown post-processing stage 'sharpen'"):
    postprocess.build_pipeline("report", {"sharpen": {}})
  with pytest.raises(ValueError, match="Bad parameters for post-processing stage 'unsharp'"):
    postprocess.build_pipeline("report", {"unsharp": {"radius": 3}})
  with pytest.raises(ValueError, match="unknown variant"):
    postprocess.build_pipeline("dehaze", {"dehaze": {"variant": "he2009"}})(x)
  with pytest.raises(ValueError, match="report: expected 3 channels"):
    postprocess.build_pipeline("report")(x[..., :1])


def test_run_stages_matches_pipeline(faces):
  x = faces[:3]
  stages = postprocess.run_stages(x, "report")
  assert [name for name, _ in stages] == list(STAGE_DEFAULTS)
  np.testing.assert_array_equal(stages[-1][1], postprocess.build_pipeline("report")(x))
  truncated = postprocess.from_levels(postprocess.trunc_levels(x))
  np.testing.assert_array_equal(stages[0][1], postprocess.enhance(truncated))
  assert postprocess.run_stages(x, "none") == []
  mixed = postprocess.run_stages(x, "report,unsharp")
  np.testing.assert_array_equal(mixed[-1][1], postprocess.unsharp(stages[-1][1]))


def test_build_panels(faces):
  x = faces
  panels = postprocess.build_panels("figure1")
  assert panels.labels == ("Enhanced", "Dehazed", "Final")
  steps = _chain("figure1")(x)
  for got, want in zip(jax.jit(panels.fn)(x), (steps[0], steps[2], steps[4])):
    np.testing.assert_array_equal(got, want)
  assert postprocess.build_panels("report").labels == ("Enhanced", "Dehazed", "Final")
  assert postprocess.build_panels("generations").labels == ("Dehazed", "Final")
  assert postprocess.build_panels("enhance,unsharp").labels == ("Enhanced", "Final")
  with pytest.raises(ValueError, match="needs post-processing stages"):
    postprocess.build_panels("none")
