"""The batched JAX post-processing agrees with the report's per-image numpy/PIL/OpenCV chain."""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import postprocess_reference as ref
import pytest

from jaxvae import postprocess

# Tolerances. Where the reference works in uint8 the JAX stage must agree within 1 level (1/255)
# per pixel; LEVEL carries 1e-3 level of slack for k / 255 in float32. Where it works in float
# (dehaze, OpenCV's float32 filters) within 1e-5 on the [0, 1] scale. Enhance and unsharp (at
# the report's amount) are bit-exact in practice, bilateral is 1 level off at ~1.5e-5 of values
# (see `_check_chain`); the only exception to these tolerances is the chain after bilateral.
LEVEL = 1.001
FLOAT = 1e-5

STAGE_DEFAULTS = ("enhance", "dehaze", "bilateral", "unsharp")


@functools.cache
def _jit(stage: str, **kwargs):
  return jax.jit(functools.partial(postprocess.STAGES[stage], **kwargs))


def _levels_err(out, expected_u8) -> float:
  """Max |out * 255 - expected| over all pixels, on the 0-255 scale."""
  return float(np.max(np.abs(np.asarray(out, np.float64) * 255 - expected_u8)))


def _per_image(fn, images):
  return np.stack([fn(image) for image in images])


@pytest.fixture(scope="module")
def image_sets():
  rng = np.random.default_rng(0)
  smooth = ref.sample_images(4, size=64, seed=1)
  return {  # noise and faces share a shape, and so their compilations.
      # Uniform noise: every colour difference and every clipping path.
      "noise": rng.random((4, 64, 64, 3), dtype=np.float32),
      # Photo crops with a little noise, like model outputs.
      "faces": ref.sample_images(4, size=64, seed=0),
      # Non-square, to catch H/W mix-ups (2240 pixels: the atmospheric light averages 2).
      "oblong": np.ascontiguousarray(smooth[:, :40, :56]),
  }


SETS = ("noise", "faces", "oblong")


@pytest.mark.parametrize("saturation,contrast", [(2.0, 3.0), (0.37, 1.77), (1.3, 2.2)])
@pytest.mark.parametrize("name", SETS)
def test_enhance_matches_pil(image_sets, name, saturation, contrast):
  x = image_sets[name]
  expected = _per_image(lambda im: ref.enhance(ref.to_uint8(im), saturation, contrast), x)
  err = _levels_err(_jit("enhance", saturation=saturation, contrast=contrast)(x), expected)
  assert err <= LEVEL, f"enhance differs from PIL by {err:.4f} levels"


@pytest.mark.parametrize("variant", ["report", "he2011"])
@pytest.mark.parametrize("name", SETS)
def test_dehaze_matches_numpy(image_sets, name, variant):
  # Float inputs, and 8-bit inputs after enhance as in the chain (many tied dark-channel values).
  for x in (image_sets[name], np.asarray(_jit("enhance")(image_sets[name]))):
    expected = _per_image(lambda im: ref.dehaze(im.astype(np.float64), variant), x)
    err = float(np.max(np.abs(_jit("dehaze", variant=variant)(x) - expected)))
    assert err <= FLOAT, f"dehaze {variant} differs from numpy by {err:.2e}"


@pytest.mark.parametrize("name", SETS)
def test_dark_channel_is_the_edge_padded_minimum(image_sets, name):
  x = image_sets[name]
  expected = _per_image(ref.dark_channel_padded, x)
  np.testing.assert_array_equal(_per_image(ref.dark_channel, x), expected)  # cv2.erode
  np.testing.assert_array_equal(postprocess.dark_channel(jnp.asarray(x), 15), expected)


def test_dehaze_atmospheric_light_ties():
  # A flat dark channel: every pixel ties, and the stable argsort keeps the last 4 (raster order).
  x = np.zeros((1, 64, 64, 3), np.float32)
  x[0, -1, -4:] = [[0.2, 0.4, 0.6]] * 4
  x[0, 0, :4] = 1.0
  dark = postprocess.dark_channel(jnp.asarray(x), 15)
  light = np.asarray(postprocess.atmospheric_light(jnp.asarray(x), dark))
  np.testing.assert_allclose(light[0], [0.2, 0.4, 0.6], rtol=1e-6)
  np.testing.assert_allclose(ref.atmospheric_light(x[0], ref.dark_channel(x[0])), light[0],
                             rtol=1e-6)


@pytest.mark.parametrize("d,sigma_color,sigma_space", [(5, 75.0, 75.0), (9, 30.0, 5.0),
                                                       (0, 20.0, 2.0)])
@pytest.mark.parametrize("name", SETS)
def test_bilateral_matches_opencv(image_sets, name, d, sigma_color, sigma_space):
  x = image_sets[name]
  expected = _per_image(lambda im: ref.bilateral(ref.to_uint8(im), d, sigma_color, sigma_space), x)
  out = _jit("bilateral", d=d, sigma_color=sigma_color, sigma_space=sigma_space)(x)
  err = _levels_err(out, expected)
  assert err <= LEVEL, f"bilateral differs from OpenCV by {err:.4f} levels"


@pytest.mark.parametrize("name", SETS)
def test_bilateral_float_matches_opencv(image_sets, name):
  # OpenCV's float32 path interpolates exp in a 4096-bin table per channel; its error is ~1e-7.
  x = image_sets[name]
  expected = _per_image(lambda im: ref.bilateral(im * np.float32(255)), x) / 255
  err = float(np.max(np.abs(_jit("bilateral", quantize=False)(x) - expected)))
  assert err <= FLOAT, f"float bilateral differs from OpenCV by {err:.2e}"


# amount 1.5 (the report's) is exact in float32; for others the JAX stage computes
# (1 + amount) u - amount G(u) in float32 and the reference in float64, so a value that is exactly
# k + 0.5 can round either way: within 1 level, as required, but not always bit-equal.
@pytest.mark.parametrize("ksize,sigma,amount,threshold", [(5, 1.0, 1.5, 0.0), (7, 2.0, 0.7, 3.0),
                                                          (3, 0.8, 2.0, 10.0)])
@pytest.mark.parametrize("name", SETS)
def test_unsharp_matches_reference(image_sets, name, ksize, sigma, amount, threshold):
  x = image_sets[name]
  expected = _per_image(
      lambda im: ref.unsharp(ref.to_uint8(im), ksize, sigma, amount, threshold), x)
  out = _jit("unsharp", ksize=ksize, sigma=sigma, amount=amount, threshold=threshold)(x)
  err = _levels_err(out, expected)
  assert err <= LEVEL, f"unsharp differs from the reference by {err:.4f} levels"


@pytest.mark.parametrize("name", SETS)
def test_unsharp_float_matches_opencv(image_sets, name):
  x = image_sets[name]
  expected = _per_image(lambda im: ref.unsharp(np.clip(im, 0, 1) * np.float32(255)), x) / 255
  err = float(np.max(np.abs(_jit("unsharp", quantize=False)(x) - expected)))
  assert err <= FLOAT, f"float unsharp differs from OpenCV by {err:.2e}"


@functools.cache
def _chain():
  return jax.jit(postprocess.build_pipeline("report", intermediates=True))


def _check_chain(x):
  """Every stage of the jitted report chain against the per-image reference chain.

  Exception to the 1-level rule after bilateral. OpenCV 5 runs bilateralFilter through its IPP
  HAL, whose float32 summation order we cannot reproduce; where the weighted mean is within
  ~3e-5 of k + 0.5 the two round apart, so bilateral alone is 1 level off at about 1.5e-5 of
  values (noise and photo crops; 0 on the 2 Beta-VAE reconstructions). Unsharp turns a 1-level
  change of its input into 2.5 - 1.5 dG levels, dG in {-1, 0, 1} the change of its 8-bit blur,
  i.e. up to 4. Measured on 64 + 64 images: final values more than 1 level off 1.3e-6 (noise)
  and 6.4e-6 (photos), at most 3 levels (4 once in the 640-image benchmark). Required: at most
  0.1% of final values more than 1 level off and none more than 4. Enhance, dehaze and bilateral
  must meet their own tolerances: the JAX dehaze keeps exact values exact (see
  `postprocess.dehaze`), so its 8-bit rounding agrees too.
  """
  outputs = _chain()(x)
  expected = [np.stack(s) for s in zip(*[ref.report_chain(im, intermediates=True) for im in x])]
  errs = [np.abs(np.asarray(o, np.float64) - e) for o, e in zip(outputs, expected)]
  assert errs[0].max() * 255 <= LEVEL, f"enhance: {errs[0].max() * 255:.4f} levels"
  assert errs[1].max() <= FLOAT, f"dehaze: {errs[1].max():.2e}"
  assert errs[2].max() * 255 <= LEVEL, f"bilateral: {errs[2].max() * 255:.4f} levels"
  err = errs[3] * 255
  assert np.mean(err > LEVEL) <= 1e-3, f"unsharp: {np.mean(err > LEVEL):.3%} over 1 level"
  assert err.max() <= 4.001, f"unsharp: {err.max():.4f} levels"


@pytest.mark.parametrize("name", SETS)
def test_report_chain_matches_reference(image_sets, name):
  _check_chain(image_sets[name])


def test_stages_on_betavae_recons(betavae_recons):
  x = np.asarray(betavae_recons[:16], np.float32)
  u8 = _per_image(ref.to_uint8, x)
  assert _levels_err(_jit("enhance")(x), _per_image(ref.enhance, u8)) <= LEVEL
  assert _levels_err(_jit("bilateral")(x), _per_image(ref.bilateral, u8)) <= LEVEL
  assert _levels_err(_jit("unsharp")(x), _per_image(ref.unsharp, u8)) <= LEVEL
  for variant in ("report", "he2011"):
    expected = _per_image(lambda im: ref.dehaze(im.astype(np.float64), variant), x)
    assert np.max(np.abs(_jit("dehaze", variant=variant)(x) - expected)) <= FLOAT
  _check_chain(x)


# Identity parameters.


def test_identity_parameters(image_sets):
  x = image_sets["faces"]
  grid = np.asarray(postprocess.to_levels(x)) / np.float32(255)  # 8-bit inputs: kept exactly.
  np.testing.assert_array_equal(_jit("enhance", saturation=1.0, contrast=1.0)(grid), grid)
  np.testing.assert_array_equal(
      _jit("enhance", saturation=1.0, contrast=1.0, quantize=False)(x), x)
  for quantize, images in ((True, grid), (False, x)):
    np.testing.assert_array_equal(_jit("unsharp", amount=0.0, quantize=quantize)(images), images)
    # exp(-1 / (2 * 0.01^2)) underflows to 0: only the centre tap has weight.
    np.testing.assert_array_equal(
        _jit("bilateral", sigma_space=0.01, quantize=quantize)(images), images)
  # omega = 0 gives t = 1 (the guided filter keeps a constant): J = (I - A) / 1 + A. The report
  # variant has no identity (its +0.25 and J / max(J) are fixed).
  np.testing.assert_allclose(_jit("dehaze", variant="he2011", omega=0.0)(x), x, atol=1e-6)
  for spec in ("", "none", None, ()):
    np.testing.assert_array_equal(postprocess.build_pipeline(spec)(x), x)


# Batching, jit and vmap.


@pytest.mark.parametrize("stage", STAGE_DEFAULTS + ("he2011",))
def test_batch_equals_per_image_and_jit_equals_eager(image_sets, stage):
  x = image_sets["faces"][:3]
  if stage == "he2011":
    fn = functools.partial(postprocess.dehaze, variant="he2011")
  else:
    fn = postprocess.STAGES[stage]
  batched = np.asarray(jax.jit(fn)(x))
  one_by_one = np.concatenate([np.asarray(jax.jit(fn)(x[i:i + 1])) for i in range(len(x))])
  if stage in ("dehaze", "he2011"):
    # Float output: XLA may vectorise the float32 window sums differently per batch size.
    np.testing.assert_allclose(batched, one_by_one, rtol=0, atol=FLOAT)
  else:
    np.testing.assert_array_equal(batched, one_by_one)
  # Eager op-by-op has no fusion; float32 roundings may differ, never by a level (1e-6 < 1/255
  # makes the 8-bit stages bit-equal).
  atol = FLOAT if stage in ("dehaze", "he2011") else 1e-6
  np.testing.assert_allclose(np.asarray(fn(x)), batched, rtol=0, atol=atol)
  vmapped = jax.jit(jax.vmap(fn))(x[:, None])[:, 0]
  np.testing.assert_array_equal(np.asarray(vmapped), batched)


def test_report_preset_batch_equals_per_image(image_sets):
  x = image_sets["noise"]
  one_by_one = np.concatenate([np.asarray(_chain()(x[i:i + 1])[-1]) for i in range(len(x))])
  np.testing.assert_array_equal(np.asarray(_chain()(x)[-1]), one_by_one)


# Pipeline specs and parameters.


def test_parse_spec():
  assert postprocess.parse_spec("report") == STAGE_DEFAULTS
  assert postprocess.parse_spec(" enhance , unsharp ") == ("enhance", "unsharp")
  assert postprocess.parse_spec(["dehaze"]) == ("dehaze",)
  assert postprocess.parse_spec("report,unsharp") == STAGE_DEFAULTS + ("unsharp",)
  for off in ("", "none", None):
    assert postprocess.parse_spec(off) == ()
  for bad in ("sharpen", "enhance,,unsharp", "Report", "enhance,none"):
    with pytest.raises(ValueError, match="Unknown post-processing stage"):
      postprocess.parse_spec(bad)


def test_build_pipeline_params(image_sets):
  x = image_sets["faces"][:3]
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


def test_run_stages_matches_pipeline(image_sets):
  x = image_sets["faces"][:3]
  stages = postprocess.run_stages(x, "report")
  assert [name for name, _ in stages] == list(STAGE_DEFAULTS)
  np.testing.assert_array_equal(stages[-1][1], postprocess.build_pipeline("report")(x))
  np.testing.assert_array_equal(stages[0][1], postprocess.enhance(x))
  assert postprocess.run_stages(x, "none") == []
