"""Several photos of one plant answered as one observation.

The combined answer is the mean of the photos' log-probabilities (renormalised): photos that agree
sharpen it, photos that disagree flatten it. Its margin between the two best named classes is the
mean of the photos' logit margins, so the card's margin score applies unchanged. "Not recognised"
and "sure" use thresholds fitted at training for 2 and for 3-5 photos, on two regimes each, from
the training split's out-of-fold scores: different photos of one class, and a photo with a crop of
itself (the same flower twice). The stricter regime wins, so a second look at the same flower buys
no false certainty. numpy only: serving imports it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bunga.models.bands import MARGIN, NEVER_MARGIN, SURE_PRECISION, fit_sure, sure_values

MAX_PHOTOS = 5
COUNTS = (2, 3)  # thresholds fitted for 2 photos and for 3 (used for 3 to 5)
SAMPLES = 2000  # combinations drawn per count and regime (seeded)


def count_key(photos: int) -> str:
    """The card's key for an observation of ``photos`` (2, or 3 for 3-5)."""
    return "2" if photos <= 2 else "3"


def log_probabilities(probabilities: np.ndarray, logits: np.ndarray | None) -> np.ndarray:
    """Each row's log-probabilities in float64: from the logits when the graph gives them (exact),
    else from the probabilities (clipped: a float32 probability of 0 would be minus infinity)."""
    if logits is not None:
        z = np.asarray(logits, dtype=np.float64)
        top = z.max(axis=-1, keepdims=True)
        out: np.ndarray = z - top - np.log(np.exp(z - top).sum(axis=-1, keepdims=True))
        return out
    return np.log(np.clip(np.asarray(probabilities, dtype=np.float64), 1e-30, 1.0))


def _probabilities(log_probs: np.ndarray) -> np.ndarray:
    """Row-wise softmax of log-space scores."""
    out: np.ndarray = np.exp(log_probs - log_probs.max(axis=1, keepdims=True))
    out /= out.sum(axis=1, keepdims=True)
    return out


def combine(log_probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(photos, classes) log-probabilities -> the combined probabilities and their log-space scores
    (the mean log-probabilities: their differences are the mean logit differences)."""
    mean = np.asarray(log_probs, dtype=np.float64).mean(axis=0)
    return _probabilities(mean[None])[0], mean


@dataclass(frozen=True)
class CountFit:
    """The thresholds of one photo count and what they gave on the training split."""

    abstain_threshold: float  # on 1 - the combined top probability
    sure_threshold: float  # on the combined margin
    known_sure: dict[str, float]  # per regime: share of known combinations sure at the threshold
    known_kept: dict[str, float]  # per regime: share of known combinations recognised
    regime_abstain: dict[str, float]  # per regime: its own abstention threshold (the lowest wins)
    regime_sure: dict[str, float]  # per regime: its own sure threshold (the highest wins)


def _groups(truth: np.ndarray) -> dict[int, np.ndarray]:
    return {int(c): np.flatnonzero(truth == c) for c in np.unique(truth)}


def _different(
    log_probs: np.ndarray, truth: np.ndarray, count: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Combinations of ``count`` different photos of one class: (combined log-probs, their class)."""
    groups = {c: rows for c, rows in _groups(truth).items() if len(rows) >= count}
    if not groups:
        return np.zeros((0, log_probs.shape[1])), np.zeros(0, dtype=np.int64)
    names = np.array(sorted(groups))
    picked = rng.choice(names, size=SAMPLES)
    rows = np.stack([rng.choice(groups[int(c)], size=count, replace=False) for c in picked])
    return log_probs[rows].mean(axis=1), picked


def _same(
    log_probs: np.ndarray, truth: np.ndarray, crops: np.ndarray, crop_of: np.ndarray, count: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each photo with a crop of itself (3 and more: the photo counted again): the same flower twice."""
    if len(crops) == 0:
        return np.zeros((0, log_probs.shape[1])), np.zeros(0, dtype=np.int64)
    own = log_probs[crop_of]
    combined = (own * (count - 1) + crops) / count
    return combined, truth[crop_of]


@dataclass(frozen=True)
class Scores:
    """Out-of-fold log-probabilities of photos and of crops of some of them."""

    log_probs: np.ndarray  # (N, C)
    truth: np.ndarray  # (N,) class index
    crops: np.ndarray  # (M, C) log-probabilities of crops
    crop_of: np.ndarray  # (M,) the photo each crop was cut from
    pool: int | None = None  # the other_flowers pool's index among these scores' classes


def fit_counts(
    known: Scores,
    unknown: list[Scores],
    max_refused: float,
    precision: float = SURE_PRECISION,
    seed: int = 0,
) -> dict[str, CountFit]:
    """For 2 and for 3-5 photos: the abstention threshold keeping ``1 - max_refused`` of known
    combinations and the sure threshold (bunga.models.bands.fit_sure) against untaught-species
    combinations built the same way, in each regime; the stricter of the two regimes wins."""
    rng = np.random.default_rng(seed)
    out = {}
    for count in COUNTS:
        abstain: dict[str, float] = {}
        sure: dict[str, float] = {}
        regimes = {}
        for regime in ("different", "same"):
            if regime == "different":
                k_lp, k_truth = _different(known.log_probs, known.truth, count, rng)
                u_parts = [(_different(u.log_probs, u.truth, count, rng)[0], u.pool) for u in unknown]
            else:
                k_lp, k_truth = _same(known.log_probs, known.truth, known.crops, known.crop_of, count)
                u_parts = [(_same(u.log_probs, u.truth, u.crops, u.crop_of, count)[0], u.pool) for u in unknown]
            if len(k_lp) == 0:
                continue
            pool = known.pool
            named = k_truth != pool if pool is not None else np.ones(len(k_truth), dtype=bool)
            probs = _probabilities(k_lp)
            scores = 1.0 - probs.max(axis=1)
            threshold = float(np.quantile(scores[named], 1 - max_refused)) if named.any() else 1.0
            untaught = [sure_values(_probabilities(lp), lp, p, MARGIN) for lp, p in u_parts if len(lp)]
            fit = fit_sure(
                sure_values(probs, k_lp, pool, MARGIN)[named],
                (probs.argmax(axis=1) == k_truth)[named],
                np.concatenate(untaught) if untaught else np.zeros(0),
                precision=precision,
                never=NEVER_MARGIN,
            )
            abstain[regime] = threshold
            sure[regime] = fit.threshold
            regimes[regime] = (probs, k_lp, named, scores)
        if not abstain:
            continue
        a, s = min(abstain.values()), max(sure.values())
        known_sure, known_kept = {}, {}
        for regime, (probs, k_lp, named, scores) in regimes.items():
            values = sure_values(probs, k_lp, known.pool, MARGIN)[named]
            known_sure[regime] = float((values >= s).mean()) if len(values) else 0.0
            known_kept[regime] = float((scores[named] <= a).mean()) if named.any() else 0.0
        out[str(count)] = CountFit(a, s, known_sure, known_kept, abstain, sure)
    return out
