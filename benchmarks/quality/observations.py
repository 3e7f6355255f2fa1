"""Several photos of one plant (#39): what combining 2 or 3 photos buys, on ../shared/data/oxford102_dev
(development only, never shipped).

Protocol, per split (the trust benchmark's: 5 seeded splits; 16 known species, 19 untaught, 20 in the
other_flowers pool with 10 photos each; known photos 70/30 into training and test). The head and
every threshold are fitted as `bunga train` fits them (bunga.models.image: select_head with a crop
of each training photo as its companion, held_out_scores, observation_fits; the single-photo sure
threshold by fit_sure), from the training split alone. Judged on the test split, weighted 45:37
(known : untaught) like the bands:
- 1 photo: each test photo alone;
- "different": 2 or 3 different test photos of one species (2,000 drawn per split);
- "same": a test photo with a mirrored 60-80 % crop of itself (3: the photo counted twice).
Per case: known observations sure, share of sure answers right, known kept (recognised), untaught
refused. Run: python -m benchmarks.quality.observations"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks.quality.trust_bands import (
    HELD_OUT,
    KNOWN,
    POOL,
    POOL_PHOTOS,
    POOL_SPECIES,
    SPLITS,
    TEST_SHARE,
    over_splits,
)
from bunga.models import image
from bunga.models.bands import MARGIN, NEVER_MARGIN, UNKNOWN_PER_KNOWN, fit_sure, pool_index, sure_values
from bunga.models.observation import combine, log_probabilities

PRECISION, MAX_REFUSED, DRAWS = 0.97, 0.05, 2000
CROP_VIEW = 2  # trust_bands' views: mirror, crop, crop of the mirror


def _draw(truth: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """(DRAWS, count) row indices: different photos of one class each."""
    groups = {c: np.flatnonzero(truth == c) for c in np.unique(truth)}
    groups = {c: rows for c, rows in groups.items() if len(rows) >= count}
    names = sorted(groups)
    picked = rng.choice(len(names), size=DRAWS)
    return np.stack([rng.choice(groups[names[i]], size=count, replace=False) for i in picked])


def _answers(
    lp: np.ndarray, pool: int | None, abstain: float, sure: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(recognised, sure, top class) of combined log-probabilities (N, photos, C)."""
    combined = [combine(row) for row in lp]
    probs = np.stack([p for p, _ in combined])
    means = np.stack([m for _, m in combined])
    top = probs.argmax(axis=1)
    recognised = (1.0 - probs.max(axis=1) <= abstain) & (top != pool if pool is not None else True)
    margin = sure_values(probs, means, pool, MARGIN)
    return recognised, recognised & (margin >= sure), top


def _judge(known: tuple, unknown: tuple, right_class: np.ndarray) -> dict[str, float]:
    (rec_k, sure_k, top_k), (rec_u, sure_u, _) = known, unknown
    right = top_k == right_class
    weight = UNKNOWN_PER_KNOWN * len(sure_k) / max(len(sure_u), 1)
    denominator = sure_k.sum() + weight * sure_u.sum()
    return {
        "known_sure": float(sure_k.mean()),
        "sure_right": float((sure_k & right).sum() / denominator) if denominator else float("nan"),
        "known_kept": float(rec_k.mean()),
        "unknown_refused": float(1 - rec_u.mean()),
    }


def one_split(x: np.ndarray, views: np.ndarray, y: np.ndarray, seed: int) -> dict[str, dict[str, float]]:
    rng = np.random.default_rng(seed)
    chosen = rng.permutation(np.unique(y))
    held, pool_species = chosen[:HELD_OUT], chosen[HELD_OUT : HELD_OUT + POOL_SPECIES]
    known_species = sorted(chosen[HELD_OUT + POOL_SPECIES : HELD_OUT + POOL_SPECIES + KNOWN])
    test = np.zeros(len(y), dtype=bool)
    for name in known_species:
        rows = np.flatnonzero(y == name)
        test[rng.choice(rows, round(len(rows) * TEST_SHARE), replace=False)] = True
    train_rows = np.flatnonzero(np.isin(y, known_species) & ~test)
    pool_rows = np.concatenate([rng.choice(np.flatnonzero(y == s), POOL_PHOTOS, replace=False) for s in pool_species])
    rows = np.concatenate([train_rows, pool_rows])
    x_train, y_train = x[rows], np.concatenate([y[train_rows], np.full(len(pool_rows), POOL)])
    classes = sorted(set(y_train))
    pool = pool_index(classes, POOL)
    crops, crop_of = views[rows, CROP_VIEW], np.arange(len(rows))
    selection = image.select_head(x_train, y_train, classes, 3, seed, MAX_REFUSED, crops, crop_of)
    head = image.fit_head(x_train, y_train, classes, selection.c, selection.temperature)
    held_scores = image.held_out_scores(
        x_train, y_train, classes, selection.c, selection.temperature, pool=POOL, companions=crops, companion_of=crop_of
    )
    named = np.asarray(classes)[selection.truth] != POOL
    single = fit_sure(
        sure_values(selection.probs, selection.logits, pool, MARGIN)[named],
        (selection.probs.argmax(axis=1) == selection.truth)[named],
        image.held_out_tops(
            x_train, y_train, classes, selection.c, selection.temperature, score=MARGIN, scored=held_scores
        ),
        precision=PRECISION,
        never=NEVER_MARGIN,
    )
    fits = image.observation_fits(selection, held_scores, crop_of, pool, MAX_REFUSED, PRECISION, seed)
    known_rows, unknown_rows = np.flatnonzero(test), np.flatnonzero(np.isin(y, held))
    index = {c: i for i, c in enumerate(classes)}

    def lp(rows_: np.ndarray, source: np.ndarray) -> np.ndarray:
        logits = head.logits(source[rows_])
        return log_probabilities(logits, logits)

    lp_k, lp_u = lp(known_rows, x), lp(unknown_rows, x)
    crop_k, crop_u = lp(known_rows, views[:, CROP_VIEW]), lp(unknown_rows, views[:, CROP_VIEW])
    truth_k = np.array([index[c] for c in y[known_rows]])
    truth_u = np.array([str(c) for c in y[unknown_rows]])
    out: dict[str, dict[str, float]] = {}
    abstain1 = selection.thresholds["max_prob"]
    out["1 photo"] = _judge(
        _answers(lp_k[:, None], pool, abstain1, single.threshold),
        _answers(lp_u[:, None], pool, abstain1, single.threshold),
        truth_k,
    )
    for count in (2, 3):
        fit = fits.get(str(count))
        if fit is None:
            continue
        a, s = fit.abstain_threshold, fit.sure_threshold
        pick_k, pick_u = _draw(truth_k, count, rng), _draw(truth_u, count, rng)
        out[f"{count} different photos"] = _judge(
            _answers(lp_k[pick_k], pool, a, s), _answers(lp_u[pick_u], pool, a, s), truth_k[pick_k[:, 0]]
        )
        same_k = np.stack([lp_k, crop_k] + [lp_k] * (count - 2), axis=1)
        same_u = np.stack([lp_u, crop_u] + [lp_u] * (count - 2), axis=1)
        out[f"{count}: a photo and a crop of itself"] = _judge(
            _answers(same_k, pool, a, s), _answers(same_u, pool, a, s), truth_k
        )
    for label, values in out.items():
        print(seed, label, {k: round(v, 3) for k, v in values.items()}, flush=True)
    return out


def main() -> dict[str, Any]:
    protocol = (
        f"oxford102_dev: {KNOWN} known / {HELD_OUT} untaught / {POOL_SPECIES} pool species "
        f"({POOL_PHOTOS} photos each), {SPLITS} splits; thresholds fitted as bunga train fits them; "
        "sure answers judged on the 45:37 mix"
    )
    return over_splits("observations", protocol, one_split)


if __name__ == "__main__":
    main()
