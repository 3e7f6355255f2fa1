"""Combining photos of one plant (bunga.models.observation) and keeping one plant's photos on one
side of the split (bunga.data.dataset.holdout_mask)."""

from __future__ import annotations

import numpy as np

from bunga.data.dataset import holdout_mask
from bunga.models.bands import NEVER_MARGIN, fit_sure
from bunga.models.observation import Scores, combine, fit_counts, log_probabilities


def test_the_combination_is_the_mean_of_log_probabilities() -> None:
    logits = np.array([[4.0, 1.0, 0.0], [2.0, 2.5, 0.0]])
    lp = log_probabilities(np.zeros_like(logits), logits)
    probs, mean = combine(lp)
    expected = np.exp(lp.mean(axis=0)) / np.exp(lp.mean(axis=0)).sum()
    assert np.allclose(probs, expected) and abs(probs.sum() - 1) < 1e-12
    assert np.isclose(mean[0] - mean[1], ((4 - 1) + (2 - 2.5)) / 2)  # the margin is the mean of the logit margins
    saturated = log_probabilities(np.array([[1.0, 0.0, 0.0]], dtype=np.float32), None)
    assert np.isfinite(saturated).all()  # a float32 probability of 0 stays finite


def _scores(rng: np.random.Generator, classes: int, per: int, spread: float, crop_noise: float) -> Scores:
    truth = np.repeat(np.arange(classes), per)
    logits = rng.normal(0, spread, (len(truth), classes))
    logits[np.arange(len(truth)), truth] += 3.0
    of = np.arange(len(truth))
    crops = logits[of] + rng.normal(0, crop_noise, (len(of), classes))
    return Scores(log_probabilities(logits, logits), truth, log_probabilities(crops, crops), of)


def test_a_second_look_at_the_same_flower_buys_no_false_certainty() -> None:
    rng = np.random.default_rng(0)
    known = _scores(rng, 6, 40, 1.5, 0.0)  # a "crop" that adds nothing: the photo again
    held = rng.normal(0, 1.0, (120, 6))  # untaught: no class stands out
    lp = log_probabilities(held, held)
    unknown = [Scores(lp, np.zeros(120, dtype=np.int64), lp, np.arange(120))]
    fits = fit_counts(known, unknown, max_refused=0.05)
    assert set(fits) == {"2", "3"}
    margins = np.sort(known.log_probs, axis=1)
    single = fit_sure(
        margins[:, -1] - margins[:, -2],
        known.log_probs.argmax(axis=1) == known.truth,
        np.diff(np.sort(unknown[0].log_probs, axis=1)[:, -2:], axis=1)[:, 0],
        never=NEVER_MARGIN,
    )
    two = fits["2"]
    assert single.threshold < NEVER_MARGIN  # a sure band exists on this data
    assert two.regime_sure["same"] == single.threshold  # the photo twice is held to one photo's threshold
    assert two.sure_threshold == max(two.regime_sure.values()) >= single.threshold  # the stricter wins
    assert two.abstain_threshold == min(two.regime_abstain.values())
    assert two.known_kept["different"] >= 0.9  # kept at the fitted share (95 %) on different photos


def test_photos_of_one_plant_fall_on_one_side_of_the_split() -> None:
    keys = [f"sha{i}" for i in range(60)]
    labels = np.array(["a"] * 30 + ["b"] * 30, dtype=object)
    plain = holdout_mask(keys, labels, 0.25, 7)
    assert np.array_equal(plain, holdout_mask(keys, labels, 0.25, 7, [""] * 60))  # no ids: the split as before
    observations = [f"obs{i // 3}" for i in range(60)]  # 20 plants of 3 photos each
    grouped = holdout_mask(keys, labels, 0.25, 7, observations)
    for plant in set(observations):
        sides = {bool(grouped[i]) for i, o in enumerate(observations) if o == plant}
        assert len(sides) == 1
    assert 0.15 <= grouped.mean() <= 0.35
