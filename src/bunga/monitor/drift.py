"""Drift statistics over binned counts: PSI with a chi-square guard, binned KS, and a kernel MMD for
photo signatures. The window is given as counts over the bins the reference profile's quantiles cut,
so a monitor never holds the rows themselves."""

from __future__ import annotations

import numpy as np
from scipy import stats

EPS = 1e-4
PSI_BINS = 10
CHART_BINS = 20  # bins of the report's distribution charts


def psi(actual: np.ndarray, expected: np.ndarray) -> float:
    """Population stability index of two distributions over the same bins (shares)."""
    a, e = np.clip(actual, EPS, None), np.clip(expected, EPS, None)
    return float(np.sum((a - e) * np.log(a / e)))


def shares_p_value(window: np.ndarray, reference: np.ndarray, n: int, reference_n: int) -> float:
    """How likely the window's shares are under the reference's, from sampling noise alone (Pearson's
    chi-square on the counts, the reference's own sample size counted as for KS). PSI alone cannot
    tell: on 40 rows and 10 bins one empty bin (1.5 % likely each) gives a PSI near 0.7, so a PSI over
    the alarm level raises an alarm only when noise is unlikely to explain it."""
    kept = reference > 0
    if n == 0 or kept.sum() < 2:
        return 1.0
    expected = n * reference[kept]
    chi2 = float(np.sum((n * window[kept] - expected) ** 2 / expected)) * reference_n / (n + reference_n)
    return float(stats.chi2.sf(chi2, int(kept.sum()) - 1))


def reference_cdf(quantiles: np.ndarray, at: np.ndarray) -> np.ndarray:
    """The reference's CDF at ``at``, from its evenly spaced quantiles (ties handled)."""
    return (np.searchsorted(quantiles, at, side="right") - 1).clip(0) / (len(quantiles) - 1)


def binned_ks(counts: np.ndarray, quantiles: np.ndarray, reference_n: int) -> tuple[float, float]:
    """KS statistic and p-value of a window against the reference; the window is given as counts in
    the bins the reference's inner quantiles make (``x <= edge`` falls at or left of the edge)."""
    n = int(counts.sum())
    if n == 0:
        return 0.0, 1.0
    edges = quantiles[1:-1]
    window_cdf = np.cumsum(counts)[: len(edges)] / n
    d = float(np.max(np.abs(window_cdf - reference_cdf(quantiles, edges))))
    effective = n * reference_n / (n + reference_n)
    return d, float(stats.kstwo.sf(d, max(1, round(effective))))


def binned_shares(counts: np.ndarray, quantiles: np.ndarray, bins: int = PSI_BINS) -> tuple[np.ndarray, np.ndarray]:
    """The window's and the reference's shares over ``bins`` bins cut at the reference's quantiles (the
    fine counts are cut at every reference quantile, so coarse edges fall on fine ones)."""
    n = counts.sum()
    step = (len(quantiles) - 1) // bins
    index = np.arange(step, len(quantiles) - 1, step)  # inner quantile positions of the coarse edges
    window = np.diff(np.concatenate([[0.0], np.cumsum(counts)[index - 1] / max(n, 1), [1.0 if n else 0.0]]))
    reference = np.diff(np.concatenate([[0.0], reference_cdf(quantiles, quantiles[index]), [1.0]]))
    return window, reference


def distribution(counts: np.ndarray, quantiles: np.ndarray, bins: int = CHART_BINS) -> dict[str, list[float]]:
    """A window's and the reference's shares over ``bins`` bins cut at the reference's quantiles, with
    the bins' bounds, for a chart."""
    bins = min(bins, len(quantiles) - 1)
    step = (len(quantiles) - 1) // bins
    window, reference = binned_shares(counts, quantiles, bins)
    bounds = quantiles[np.concatenate([np.arange(0, len(quantiles) - 1, step)[: len(window)], [len(quantiles) - 1]])]
    return {"edges": bounds.tolist(), "window": window.tolist(), "reference": reference.tolist()}


def binned_psi(counts: np.ndarray, quantiles: np.ndarray, bins: int = PSI_BINS) -> float:
    """PSI over ``bins`` bins cut at the reference's quantiles."""
    if counts.sum() == 0:
        return 0.0
    return psi(*binned_shares(counts, quantiles, bins))


def mmd_test(x: np.ndarray, y: np.ndarray, permutations: int = 200, seed: int = 0) -> tuple[float, float]:
    """Maximum mean discrepancy (RBF kernel, median-distance bandwidth) between two samples, with a
    permutation p-value."""
    pooled = np.concatenate([x, y]).astype(np.float64)
    sq = np.sum(pooled**2, axis=1)
    d2 = np.clip(sq[:, None] + sq[None, :] - 2 * pooled @ pooled.T, 0, None)
    bandwidth = float(np.median(d2[np.triu_indices(len(pooled), 1)])) or 1.0
    k = np.exp(-d2 / bandwidth)
    n = len(x)

    def statistic(order: np.ndarray) -> float:
        a, b = order[:n], order[n:]
        return float(k[np.ix_(a, a)].mean() + k[np.ix_(b, b)].mean() - 2 * k[np.ix_(a, b)].mean())

    observed = statistic(np.arange(len(pooled)))
    rng = np.random.default_rng(seed)
    exceed = sum(statistic(rng.permutation(len(pooled))) >= observed for _ in range(permutations))
    return observed, (exceed + 1) / (permutations + 1)
