"""FID and KID from Inception pool3 features, with streaming statistics of bounded memory.

FID (Heusel et al. 2017), as pytorch-fid's `calculate_frechet_distance`:
  d^2 = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr(sqrtm(S1 S2)),
with mu, S the mean and unbiased covariance (np.cov) of each set's [N, 2048] features. The
statistics stream: a running sum and sum of outer products in float64 (about a shifted origin,
for accuracy), so memory is O(D^2) whatever N. S has rank <= N - 1, so with N <= 2048 images it
is singular and FID is biased upward (a `RankDeficientWarning` says so).

KID (Binkowski et al. 2018), as torch-fidelity's `kid_features_to_metric`: the unbiased MMD^2
with the kernel k(x, y) = (x.y / D + 1)^3, averaged over `subsets` random subsets of
`subset_size` features of each set (drawn with np.random.RandomState(seed).choice without
replacement, set 1 then set 2, as torch-fidelity), reported as mean and std; in float64 (equal to
torch-fidelity on float64 features; it computes in its features' float32). The features it
draws from are a uniform reservoir sample (Algorithm R) of at most `reservoir` rows per set, so
memory is bounded; with N <= reservoir it holds every feature, in order.
"""

from typing import Any, NamedTuple
import warnings

import numpy as np
from scipy import linalg

from jaxvae.nets import inception

FID_EPS = 1e-6  # pytorch-fid: added to the diagonals when sqrtm(S1 S2) is not finite.
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
KID_SEED = 2020  # torch-fidelity's default rng_seed.
KID_RESERVOIR = 10_000  # Rows kept per set: 10,000 x 2048 float32 = 82 MB.
KID_GRAM_LIMIT = 4096  # Up to this many rows per set, each kernel matrix is computed once.


class RankDeficientWarning(UserWarning):
  """FID from no more images than feature dimensions: singular covariance, biased FID."""


class KIDSubsetWarning(UserWarning):
  """Fewer features than the KID subset size: the subsets are smaller than asked for."""


class Statistics(NamedTuple):
  n: int
  mu: np.ndarray  # [D] float64
  sigma: np.ndarray  # [D, D] float64, unbiased covariance


class KID(NamedTuple):
  mean: float
  std: float
  subset_size: int


class Scores(NamedTuple):
  fid: float
  kid: KID
  n_real: int
  n_fake: int


def _check_features(feats: Any, dim: int | None) -> np.ndarray:
  feats = np.asarray(feats)
  if feats.ndim != 2 or (dim is not None and feats.shape[1] != dim):
    raise ValueError(f"expected features [N, {dim or 'D'}], got shape {feats.shape}")
  if not np.isfinite(feats).all():
    raise ValueError("features hold NaN or infinite values")
  return feats


class RunningStatistics:
  """Mean and covariance of features fed in batches; float64 sums, O(D^2) memory."""

  def __init__(self, dim: int = inception.FEATURE_DIM):
    self.dim = dim
    self.n = 0
    self._shift = None  # The first batch's mean: sums are taken about it.
    self._sum = np.zeros(dim, np.float64)
    self._outer = np.zeros((dim, dim), np.float64)

  def update(self, feats: Any) -> None:
    feats = _check_features(feats, self.dim).astype(np.float64)
    if not len(feats):
      return
    if self._shift is None:
      self._shift = feats.mean(axis=0)
    centred = feats - self._shift
    self.n += len(feats)
    self._sum += centred.sum(axis=0)
    self._outer += centred.T @ centred

  def result(self) -> Statistics:
    """mu = shift + s / n, sigma = (S - s s^T / n) / (n - 1), as np.mean and np.cov."""
    if self.n < 2:
      raise ValueError(f"statistics need at least 2 feature rows, got {self.n}")
    mu = self._shift + self._sum / self.n
    sigma = (self._outer - np.outer(self._sum, self._sum) / self.n) / (self.n - 1)
    return Statistics(self.n, mu, (sigma + sigma.T) / 2)


class Reservoir:
  """A uniform random sample of at most `capacity` feature rows (Algorithm R), in float32."""

  def __init__(self, capacity: int = KID_RESERVOIR, seed: int = 0):
    if capacity < 1:
      raise ValueError(f"reservoir capacity must be positive, got {capacity}")
    self.capacity = capacity
    self.seen = 0
    self._rows: np.ndarray | None = None
    self._rng = np.random.default_rng(seed)

  def update(self, feats: Any) -> None:
    feats = _check_features(feats, None if self._rows is None else self._rows.shape[1])
    if self._rows is None:
      self._rows = np.empty((self.capacity, feats.shape[1]), np.float32)
    room = min(max(self.capacity - self.seen, 0), len(feats))
    self._rows[self.seen:self.seen + room] = feats[:room]
    # Row t (0-based, t >= capacity) replaces slot j ~ U{0..t} when j < capacity.
    t = self.seen + np.arange(room, len(feats))
    slots = self._rng.integers(0, t + 1) if len(t) else np.zeros(0, np.int64)
    for row, slot in zip(np.arange(room, len(feats))[slots < self.capacity],
                         slots[slots < self.capacity]):
      self._rows[slot] = feats[row]
    self.seen += len(feats)

  @property
  def features(self) -> np.ndarray:
    """[min(seen, capacity), D] the kept rows (all of them, in order, while seen <= capacity)."""
    if self._rows is None:
      return np.zeros((0, 0), np.float32)
    return self._rows[:min(self.seen, self.capacity)]


class FeatureSet:
  """Streaming FID statistics and a KID reservoir of one set of images' Inception features."""

  def __init__(self, dim: int = inception.FEATURE_DIM, reservoir: int = KID_RESERVOIR,
               seed: int = 0):
    self.stats = RunningStatistics(dim)
    self.reservoir = Reservoir(reservoir, seed)

  def update(self, feats: Any) -> None:
    """Adds [B, D] features."""
    self.stats.update(feats)
    self.reservoir.update(feats)

  def add_images(self, variables: Any, images: Any,
                 batch_size: int = inception.DEFAULT_BATCH_SIZE) -> None:
    """Adds the Inception features of [B, H, W, 3] images in [0, 1] (`inception.load()`)."""
    self.update(inception.features(variables, images, batch_size))

  @property
  def n(self) -> int:
    return self.stats.n


def frechet_distance(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any, eps: float = FID_EPS) -> float:
  """pytorch-fid's calculate_frechet_distance: |mu1 - mu2|^2 + tr(S1 + S2 - 2 sqrtm(S1 S2)).

  As there, sqrtm(S1 S2) is recomputed with eps added to both diagonals when it is not finite,
  and a complex square root is accepted (its real part) only when its diagonal's imaginary part
  is within 1e-3 of zero.
  """
  mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
  sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
  if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
    raise ValueError(f"mismatched statistics: mu {mu1.shape} and {mu2.shape}, sigma "
                     f"{sigma1.shape} and {sigma2.shape}")
  diff = mu1 - mu2
  covmean = linalg.sqrtm(sigma1.dot(sigma2))
  if not np.isfinite(covmean).all():
    warnings.warn(f"fid calculation produces singular product; adding {eps} to diagonal of cov "
                  "estimates", RuntimeWarning, stacklevel=2)
    offset = np.eye(sigma1.shape[0]) * eps
    covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
  if np.iscomplexobj(covmean):
    if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
      raise ValueError(f"FID: sqrtm(S1 S2) has an imaginary component of "
                       f"{np.max(np.abs(covmean.imag)):.3g} (badly conditioned covariances)")
    covmean = covmean.real
  return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def fid(real: Statistics, fake: Statistics) -> float:
  """The Frechet distance of two sets' statistics; warns when either has N <= D images."""
  dim = real.mu.shape[0]
  small = [s.n for s in (real, fake) if s.n <= dim]
  if small:
    warnings.warn(f"FID from {min(small)} images: the covariance of {dim} features is singular "
                  f"below {dim + 1} images, which biases FID upward; it is not comparable with "
                  f"FIDs from more images (published FIDs use 10,000 or 50,000)",
                  RankDeficientWarning, stacklevel=2)
  return frechet_distance(real.mu, real.sigma, fake.mu, fake.sigma)


def _mmd2_unbiased(k_xx: np.ndarray, k_xy: np.ndarray, k_yy: np.ndarray) -> float:
  """(sum_{i!=j} k_xx + sum_{i!=j} k_yy) / (m (m - 1)) - 2 sum k_xy / m^2."""
  m = k_xx.shape[0]
  off_xx = (k_xx.sum(axis=1) - np.diagonal(k_xx)).sum()  # torch-fidelity's summation order.
  off_yy = (k_yy.sum(axis=1) - np.diagonal(k_yy)).sum()
  return float((off_xx + off_yy) / (m * (m - 1)) - 2 * k_xy.sum(axis=0).sum() / (m * m))


def kid(feats1: Any, feats2: Any, subsets: int = KID_SUBSETS,
        subset_size: int = KID_SUBSET_SIZE, seed: int = KID_SEED,
        gram_limit: int = KID_GRAM_LIMIT) -> KID:
  """KID of two feature sets [N1, D], [N2, D]: mean and std of the subsets' unbiased MMD^2.

  With fewer than `subset_size` rows in a set, the subsets take all rows of the smaller set
  (torch-fidelity refuses; a KIDSubsetWarning says so here). Sets of at most `gram_limit` rows
  have their kernel matrices computed once and indexed per subset (same values).
  """
  x = _check_features(feats1, None).astype(np.float64)
  y = _check_features(feats2, x.shape[1]).astype(np.float64)
  n1, n2 = len(x), len(y)
  if min(n1, n2) < 2:
    raise ValueError(f"KID needs at least 2 feature rows per set, got {n1} and {n2}")
  if min(n1, n2) < subset_size:
    warnings.warn(f"KID from {n1} and {n2} images: subsets of {min(n1, n2)} instead of "
                  f"{subset_size}, so the KID is noisier and not comparable with KIDs of "
                  f"subset size {subset_size}", KIDSubsetWarning, stacklevel=2)
    subset_size = min(n1, n2)
  kernel = lambda a, b: (a @ b.T / x.shape[1] + 1.0) ** 3
  gram = max(n1, n2) <= gram_limit
  if gram:
    k_xx, k_yy, k_xy = kernel(x, x), kernel(y, y), kernel(x, y)
  rng = np.random.RandomState(seed)
  mmds = np.zeros(subsets)
  for s in range(subsets):
    i = rng.choice(n1, subset_size, replace=False)
    j = rng.choice(n2, subset_size, replace=False)
    if gram:
      mmds[s] = _mmd2_unbiased(k_xx[np.ix_(i, i)], k_xy[np.ix_(i, j)], k_yy[np.ix_(j, j)])
    else:
      mmds[s] = _mmd2_unbiased(kernel(x[i], x[i]), kernel(x[i], y[j]), kernel(y[j], y[j]))
  return KID(float(np.mean(mmds)), float(np.std(mmds)), subset_size)


def scores(real: FeatureSet, fake: FeatureSet, kid_subsets: int = KID_SUBSETS,
           kid_subset_size: int = KID_SUBSET_SIZE, seed: int = KID_SEED) -> Scores:
  """FID and KID between two feature sets (warnings as in `fid` and `kid`)."""
  return Scores(fid(real.stats.result(), fake.stats.result()),
                kid(real.reservoir.features, fake.reservoir.features, kid_subsets,
                    kid_subset_size, seed),
                real.n, fake.n)
