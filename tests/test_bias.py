"""Bias statistics on synthetic data with planted gaps and coefficients."""

import numpy as np
import pytest
from scipy import stats

from jaxvae import bias
from jaxvae import celeba

NAMES = celeba.ATTR_NAMES


def test_gaps_are_differences_of_group_means():
  errors = np.array([1.0, 2.0, 3.0, 6.0])
  attrs = np.array([[1, -1], [1, 1], [-1, 1], [-1, -1]], np.int8)
  got = bias.attribute_gaps(errors, attrs, ("A", "B"), n_boot=50)
  np.testing.assert_array_equal(got.n_with, [2, 2])
  np.testing.assert_array_equal(got.n_without, [2, 2])
  np.testing.assert_allclose(got.mean_with, [1.5, 2.5])
  np.testing.assert_allclose(got.mean_without, [4.5, 3.5])
  np.testing.assert_allclose(got.gap, [-3.0, -1.0])
  assert np.all(got.ci_low <= got.ci_high)


def _independent_sample(rng, n):
  """Errors with planted marginal gaps 0.3, 0 and -0.2 for three independent attributes."""
  attrs = rng.random((n, 3)) < [0.1, 0.5, 0.3]
  errors = 1.0 + attrs @ np.array([0.3, 0.0, -0.2]) + rng.exponential(0.5, n)  # skewed, like MSE
  return errors, attrs


def test_bootstrap_ci_contains_the_true_gap_with_the_right_width():
  rng = np.random.default_rng(0)
  errors, attrs = _independent_sample(rng, 4000)
  got = bias.attribute_gaps(errors, attrs, ("a", "b", "c"), n_boot=2000, seed=1)
  true_gap = np.array([0.3, 0.0, -0.2])
  assert np.all((got.ci_low < true_gap) & (true_gap < got.ci_high)), (got.ci_low, got.ci_high)
  # Normal-theory width 2 * 1.96 * sd * sqrt(1/n1 + 1/n0), sd 0.5: the bootstrap must agree
  # within 15% (a uselessly wide interval would contain anything).
  n1 = attrs.sum(axis=0)
  want = 2 * 1.96 * 0.5 * np.sqrt(1 / n1 + 1 / (4000 - n1))
  np.testing.assert_allclose(got.ci_high - got.ci_low, want, rtol=0.15)
  assert got.ci_low[0] > 0 and got.ci_high[2] < 0


def test_bootstrap_coverage_is_nominal():
  rng = np.random.default_rng(2)
  hits, reps = 0, 200
  for r in range(reps):
    errors, attrs = _independent_sample(rng, 300)
    got = bias.attribute_gaps(errors, attrs[:, :1], ("a",), n_boot=400, seed=r)
    hits += got.ci_low[0] < 0.3 < got.ci_high[0]
  # 95% nominal; binomial sd over 200 runs is 1.5 points, so [0.89, 0.99] is about 4 sd wide.
  assert 0.89 <= hits / reps <= 0.99, hits / reps


def test_bootstrap_is_seeded():
  errors, attrs = _independent_sample(np.random.default_rng(3), 500)
  a = bias.attribute_gaps(errors, attrs, ("a", "b", "c"), n_boot=300, seed=7)
  b = bias.attribute_gaps(errors, attrs, ("a", "b", "c"), n_boot=300, seed=7)
  c = bias.attribute_gaps(errors, attrs, ("a", "b", "c"), n_boot=300, seed=8)
  np.testing.assert_array_equal(a.ci_low, b.ci_low)
  assert not np.array_equal(a.ci_low, c.ci_low)


def test_absent_attribute_gives_nan_not_an_error():
  errors, attrs = _independent_sample(np.random.default_rng(4), 200)
  attrs[:, 1] = False
  got = bias.attribute_gaps(errors, attrs, ("a", "b", "c"), n_boot=100)
  assert got.n_with[1] == 0
  assert np.isnan(got.gap[1]) and np.isnan(got.ci_low[1]) and np.isnan(got.ci_high[1])
  assert np.isfinite(got.gap[[0, 2]]).all()


def _celeba_like(rng, n):
  """40 attributes with CelebA-like confounding; planted coefficients; heteroskedastic noise."""
  idx = {name: i for i, name in enumerate(NAMES)}
  attrs = rng.random((n, len(NAMES))) < rng.uniform(0.05, 0.5, len(NAMES))
  male = rng.random(n) < 0.42
  young = rng.random(n) < np.where(male, 0.7, 0.85)
  attrs[:, idx["Male"]] = male
  attrs[:, idx["Young"]] = young
  attrs[:, idx["Eyeglasses"]] = rng.random(n) < 0.02 + 0.12 * male + 0.1 * ~young
  attrs[:, idx["Gray_Hair"]] = rng.random(n) < 0.01 + 0.15 * ~young
  attrs[:, idx["Pale_Skin"]] = rng.random(n) < 0.06 - 0.03 * male
  beta = rng.normal(0, 0.05, len(NAMES))
  beta[idx["Eyeglasses"]] = 0.0
  beta[idx["Male"]], beta[idx["Young"]], beta[idx["Pale_Skin"]] = 0.3, -0.2, 0.15
  noise = rng.normal(0, 1, n) * (0.3 + 0.3 * male)
  errors = 1.0 + attrs @ beta + noise
  return errors, np.where(attrs, 1, -1).astype(np.int8), beta, idx


def test_regression_recovers_planted_coefficients_and_separates_confounders():
  errors, attrs, beta, idx = _celeba_like(np.random.default_rng(5), 20000)
  reg = bias.regress(errors, attrs)
  assert reg.dropped == ()
  z = (reg.coef - beta) / reg.se
  assert np.abs(z).max() < 4.5, z
  assert np.abs(reg.coef - beta).max() < 0.05
  assert abs(reg.intercept - 1.0) < 4.5 * reg.intercept_se
  eye = idx["Eyeglasses"]
  gaps = bias.attribute_gaps(errors, attrs, n_boot=300)
  assert gaps.ci_low[eye] > 0.05  # marginally, Eyeglasses looks bad (it carries Male and age)
  assert reg.ci_low[eye] < 0 < reg.ci_high[eye]  # adjusted, it makes no difference
  assert reg.ci_low[idx["Pale_Skin"]] > 0


def test_classical_errors_match_scipy_linregress():
  rng = np.random.default_rng(6)
  x = rng.random((500, 1)) < 0.3
  errors = 2.0 + 0.7 * x[:, 0] + rng.normal(0, 1, 500)
  reg = bias.regress(errors, x, ("a",), robust=False)
  ref = stats.linregress(x[:, 0].astype(float), errors)
  np.testing.assert_allclose(reg.coef[0], ref.slope, rtol=1e-10)
  np.testing.assert_allclose(reg.intercept, ref.intercept, rtol=1e-10)
  np.testing.assert_allclose(reg.se[0], ref.stderr, rtol=1e-10)
  np.testing.assert_allclose(reg.intercept_se, ref.intercept_stderr, rtol=1e-10)
  np.testing.assert_allclose(reg.r2, ref.rvalue ** 2, rtol=1e-10)
  np.testing.assert_allclose(reg.p[0], ref.pvalue, rtol=1e-6)


def test_robust_errors_of_one_binary_attribute_are_welch():
  rng = np.random.default_rng(7)
  x = rng.random((400, 1)) < 0.2
  errors = np.where(x[:, 0], rng.normal(1.5, 2.0, 400), rng.normal(1.0, 0.5, 400))
  reg = bias.regress(errors, x, ("a",))
  g1, g0 = errors[x[:, 0]], errors[~x[:, 0]]
  np.testing.assert_allclose(reg.coef[0], g1.mean() - g0.mean(), rtol=1e-10)
  welch = np.sqrt(g1.var(ddof=1) / len(g1) + g0.var(ddof=1) / len(g0))
  np.testing.assert_allclose(reg.se[0], welch, rtol=1e-8)


def test_regression_interval_coverage_is_nominal():
  rng = np.random.default_rng(8)
  hits, reps = 0, 200
  for _ in range(reps):
    attrs = rng.random((400, 3)) < [0.4, 0.2, 0.5]
    attrs[:, 1] |= attrs[:, 0] & (rng.random(400) < 0.5)  # correlated with the first
    errors = 1 + attrs @ np.array([0.5, -0.3, 0.0]) + rng.normal(0, 1, 400) * (0.5 + attrs[:, 0])
    reg = bias.regress(errors, attrs, ("a", "b", "c"))
    hits += reg.ci_low[0] < 0.5 < reg.ci_high[0]
  assert 0.89 <= hits / reps <= 0.99, hits / reps


def test_constant_and_collinear_attributes_are_dropped():
  rng = np.random.default_rng(9)
  attrs = rng.random((300, 4)) < 0.4
  attrs[:, 1] = False  # never present
  attrs[:, 3] = attrs[:, 0]  # duplicate of the first
  errors = 1 + 0.5 * attrs[:, 2] + rng.normal(0, 0.1, 300)
  reg = bias.regress(errors, attrs, ("a", "b", "c", "d"))
  assert reg.dropped == ("b", "d")
  assert np.isnan(reg.coef[[1, 3]]).all() and np.isfinite(reg.coef[[0, 2]]).all()
  assert abs(reg.coef[2] - 0.5) < 4 * reg.se[2]


def test_inputs_are_validated():
  with pytest.raises(ValueError, match="bool, 0/1 or -1/1"):
    bias.regress(np.zeros(3), np.full((3, 1), 2), ("a",))
  with pytest.raises(ValueError, match=r"attributes \[3, 2\]"):
    bias.attribute_gaps(np.zeros(3), np.zeros((3, 1), bool), ("a", "b"))
  with pytest.raises(ValueError, match="not finite"):
    bias.regress(np.array([1.0, np.inf, 2.0]), np.zeros((3, 1), bool), ("a",))


def test_report_lists_every_attribute_with_notes():
  errors, attrs, _, _ = _celeba_like(np.random.default_rng(10), 3000)
  gaps = bias.attribute_gaps(errors, attrs, n_boot=200)
  text = bias.format_report(gaps, bias.regress(errors, attrs), metric="MSE")
  lines = text.splitlines()
  assert len(lines) == 2 + len(NAMES) + 1
  for name in NAMES:
    assert sum(line.startswith(name + " ") for line in lines) == 1
  pale = next(line for line in lines if line.startswith("Pale_Skin"))
  assert "does not mean dark skin" in pale
  male = next(line for line in lines if line.startswith("Male "))
  assert male.count("*") == 2  # both intervals exclude 0 for a planted 0.3
  assert "weak evidence" in next(line for line in lines if line.startswith("Oval_Face"))
