"""Per-attribute error statistics: group gaps with bootstrap CIs and a multiple regression.

`attribute_gaps` compares the mean per-image error of the images with and without each
attribute (marginal: Eyeglasses also carries whatever Male and age do). `regress` fits the error
on all attributes at once, so each coefficient is the difference an attribute makes with the
others held fixed; correlated labels (Eyeglasses vs Male and Young, Pale_Skin) separate there.
With 40 attributes at 95%, about two intervals exclude zero by chance alone: pass a Bonferroni
`confidence=1 - 0.05 / 40` for a family-wise statement.
"""

import dataclasses
import warnings
from typing import Mapping, Sequence

import numpy as np
from scipy import stats

from jaxvae import celeba

_BOOT_ELEMENTS = 4_000_000  # resampling weights held in memory at once
_COLLINEAR_TOL = 1e-9  # relative residual below which a column counts as a combination


def _indicators(attributes: np.ndarray, names: Sequence[str], n: int) -> np.ndarray:
  attributes = np.asarray(attributes)
  if attributes.ndim != 2 or attributes.shape != (n, len(names)):
    raise ValueError(f"expected attributes [{n}, {len(names)}] for {n} errors and "
                     f"{len(names)} names, got {attributes.shape}")
  if attributes.dtype != bool and not np.isin(attributes, (-1, 0, 1)).all():
    raise ValueError("attributes must be bool, 0/1 or -1/1")
  return (attributes > 0).astype(np.float64)


def _errors(errors: np.ndarray) -> np.ndarray:
  errors = np.asarray(errors, np.float64)
  if errors.ndim != 1 or not len(errors):
    raise ValueError(f"expected per-image errors [N], got shape {errors.shape}")
  if not np.isfinite(errors).all():
    raise ValueError(f"{int((~np.isfinite(errors)).sum())} per-image errors are not finite "
                     "(e.g. PSNR of a perfect reconstruction); drop or clip them first")
  return errors


@dataclasses.dataclass(frozen=True)
class AttributeGaps:
  """Mean error with and without each attribute; gap = with - without, with a bootstrap CI."""
  names: tuple[str, ...]
  n_with: np.ndarray  # [A] int
  n_without: np.ndarray  # [A] int
  mean_with: np.ndarray  # [A], NaN if no image has the attribute
  mean_without: np.ndarray  # [A]
  gap: np.ndarray  # [A]
  ci_low: np.ndarray  # [A] percentile bootstrap interval of the gap
  ci_high: np.ndarray  # [A]
  confidence: float
  n_boot: int


def attribute_gaps(errors: np.ndarray, attributes: np.ndarray,
                   names: Sequence[str] = celeba.ATTR_NAMES, *, n_boot: int = 2000,
                   confidence: float = 0.95, seed: int = 0) -> AttributeGaps:
  """Per-attribute gaps in mean error with percentile-bootstrap confidence intervals.

  The bootstrap resamples images with replacement (so group sizes vary as they would in a new
  sample) and recomputes every attribute's gap from the same resample, vectorized as
  resampling counts times indicator matrices. Resamples in which an attribute's group is empty
  (rare attributes in small samples) are left out of that attribute's interval; an attribute
  that no image has gets NaN.

  Args:
    errors: [N] per-image error (any metric; the gap is with - without).
    attributes: [N, A] bool, 0/1 or -1/1 (CelebA's int8 attributes).
    names: the A attribute names.
    n_boot: bootstrap resamples.
    confidence: two-sided interval level.
    seed: numpy seed; equal inputs and seed give equal intervals.
  """
  e = _errors(errors)
  m = _indicators(attributes, names, len(e))
  if not 0 < confidence < 1 or n_boot < 1:
    raise ValueError(f"need 0 < confidence < 1 and n_boot >= 1, got {confidence}, {n_boot}")
  n = len(e)
  em = np.concatenate([m * e[:, None], m, e[:, None]], axis=1)  # [N, 2A + 1]

  def gaps(sums: np.ndarray) -> np.ndarray:
    """[..., 2A + 1] sums (error with, count with, total error) of n images -> [..., A] gaps."""
    s_with, c_with, s_all = np.split(sums, [a, 2 * a], axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
      return s_with / c_with - (s_all - s_with) / (n - c_with)

  a = m.shape[1]
  observed = em.sum(axis=0)
  rng = np.random.default_rng(seed)
  chunk = max(1, _BOOT_ELEMENTS // n)
  boot = []
  for start in range(0, n_boot, chunk):
    c = min(chunk, n_boot - start)
    draws = rng.integers(0, n, size=(c, n)) + n * np.arange(c)[:, None]
    counts = np.bincount(draws.reshape(-1), minlength=c * n).reshape(c, n).astype(np.float64)
    boot.append(gaps(counts @ em))
  alpha = (1 - confidence) / 2
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: attribute never present
    low, high = np.nanquantile(np.concatenate(boot), [alpha, 1 - alpha], axis=0)
  n_with = m.sum(axis=0).astype(np.int64)
  with np.errstate(invalid="ignore", divide="ignore"):
    mean_with = observed[:a] / n_with
    mean_without = (observed[-1] - observed[:a]) / (n - n_with)
  return AttributeGaps(tuple(names), n_with, n - n_with, mean_with, mean_without,
                       gaps(observed), low, high, confidence, n_boot)


@dataclasses.dataclass(frozen=True)
class Regression:
  """Least squares of per-image error on an intercept and attribute indicators (0/1).

  coef[a] is the change in expected error when attribute a is present, all others held fixed.
  Attributes that are constant in the sample, or exact linear combinations of others, cannot be
  estimated: they are listed in `dropped` and their entries are NaN.
  """
  names: tuple[str, ...]
  intercept: float  # expected error with no attribute present
  intercept_se: float
  coef: np.ndarray  # [A]
  se: np.ndarray  # [A]
  t: np.ndarray  # [A]
  p: np.ndarray  # [A] two-sided
  ci_low: np.ndarray  # [A]
  ci_high: np.ndarray  # [A]
  r2: float
  n: int
  dof: int
  dropped: tuple[str, ...]
  robust: bool
  confidence: float


def regress(errors: np.ndarray, attributes: np.ndarray,
            names: Sequence[str] = celeba.ATTR_NAMES, *, robust: bool = True,
            confidence: float = 0.95) -> Regression:
  """Ordinary least squares of errors on [1, attributes] with standard errors.

  Args:
    errors: [N] per-image error.
    attributes: [N, A] bool, 0/1 or -1/1; used as 0/1 indicators.
    names: the A attribute names.
    robust: heteroskedasticity-consistent HC2 standard errors (per-image errors are rarely
      homoskedastic); False gives the classical sigma^2 (X'X)^-1.
    confidence: level of the t intervals.
  """
  e = _errors(errors)
  m = _indicators(attributes, names, len(e))
  n, a = m.shape
  x = np.concatenate([np.ones((n, 1)), m], axis=1)
  gram = x.T @ x
  keep = [0]
  for j in range(1, a + 1):  # greedy: keep a column if it is not a combination of kept ones
    explained = gram[j, keep] @ np.linalg.solve(gram[np.ix_(keep, keep)], gram[keep, j])
    if gram[j, j] - explained > _COLLINEAR_TOL * gram[j, j]:
      keep.append(j)
  keep = np.array(keep)
  xk = x[:, keep]
  dof = n - len(keep)
  if dof < 1:
    raise ValueError(f"{n} images cannot fit {len(keep)} coefficients")
  xtx_inv = np.linalg.inv(xk.T @ xk)
  beta = xtx_inv @ (xk.T @ e)
  resid = e - xk @ beta
  if robust:
    leverage = np.sum((xk @ xtx_inv) * xk, axis=1)
    w = resid ** 2 / np.clip(1 - leverage, 1e-12, None)
    cov = xtx_inv @ (xk.T * w) @ xk @ xtx_inv
  else:
    cov = xtx_inv * (resid @ resid / dof)
  se_k = np.sqrt(np.diag(cov))
  coef_all, se_all = np.full(a + 1, np.nan), np.full(a + 1, np.nan)
  coef_all[keep], se_all[keep] = beta, se_k
  with np.errstate(invalid="ignore", divide="ignore"):
    t = coef_all / se_all
  p = 2 * stats.t.sf(np.abs(t), dof)
  half = stats.t.ppf(0.5 + confidence / 2, dof) * se_all
  tss = np.sum((e - e.mean()) ** 2)
  r2 = 1 - resid @ resid / tss if tss > 0 else float("nan")
  kept = set(keep.tolist())
  dropped = tuple(names[i - 1] for i in range(1, a + 1) if i not in kept)
  return Regression(tuple(names), float(coef_all[0]), float(se_all[0]), coef_all[1:], se_all[1:],
                    t[1:], p[1:], coef_all[1:] - half[1:], coef_all[1:] + half[1:], float(r2), n,
                    dof, dropped, robust, confidence)


def format_report(gaps: AttributeGaps, regression: Regression | None = None, *,
                  metric: str = "error", notes: Mapping[str, str] | None = None,
                  sort_by: str = "gap") -> str:
  """A plain-text table, one line per attribute, sorted by |gap| or |t| ('gap' or 't').

  A '*' marks intervals that exclude 0. Notes default to celeba.ATTRIBUTE_NOTES.
  """
  notes = celeba.ATTRIBUTE_NOTES if notes is None else notes
  if sort_by not in ("gap", "t"):
    raise ValueError(f"sort_by must be 'gap' or 't', got {sort_by!r}")
  key = np.abs(gaps.gap) if sort_by == "gap" or regression is None else np.abs(regression.t)
  order = np.argsort(-np.nan_to_num(key, nan=-1.0), kind="stable")
  pct = f"{100 * gaps.confidence:g}%"
  head = (f"{'attribute':<20} {'n with':>7} {'with':>9} {'without':>9} "
          f"{'gap [' + pct + ' CI]':>31}")
  if regression is not None:
    head += f" {'adjusted [' + f'{100 * regression.confidence:g}%' + ' CI]':>31}"
  lines = [f"per-attribute {metric}: mean with / without, gap = with - without "
           f"(bootstrap, {gaps.n_boot} resamples)"
           + ("; adjusted = regression on all attributes"
              + (" (HC2 robust SE)" if regression.robust else "") if regression else ""),
           head + "  note"]

  def cell(value, low, high):
    if not np.isfinite(value):
      return f"{'n/a':>31}"
    star = "*" if np.isfinite(low) and (low > 0 or high < 0) else " "
    return f"{value:>+10.4g} [{low:>+9.3g}, {high:>+9.3g}]{star}"

  for i in order:
    name = gaps.names[i]
    line = (f"{name:<20} {gaps.n_with[i]:>7d} {gaps.mean_with[i]:>9.4g} "
            f"{gaps.mean_without[i]:>9.4g} {cell(gaps.gap[i], gaps.ci_low[i], gaps.ci_high[i])}")
    if regression is not None:
      j = regression.names.index(name)
      line += " " + cell(regression.coef[j], regression.ci_low[j], regression.ci_high[j])
    lines.append(line + ("  " + notes[name] if name in notes else ""))
  if regression is not None:
    lines.append(f"regression: n={regression.n}, R^2={regression.r2:.3f}, intercept="
                 f"{regression.intercept:.4g}"
                 + (f", not estimable: {', '.join(regression.dropped)}" if regression.dropped
                    else ""))
  return "\n".join(lines)
