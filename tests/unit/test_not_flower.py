"""The "not a flower" rule: its two held-out scores joined by Fisher's method (no backbone needed)."""

from __future__ import annotations

import numpy as np

from bunga.models.not_flower import NotFlowerRule, fit_not_flower, not_flower_score, refusal_score

FLOWERY = [985, 738, 883]  # ImageNet daisy, pot, vase: where generated "garden photos" put their mass


def garden(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """ImageNet probabilities and centroid distances like a garden's own photos."""
    probs = rng.dirichlet(np.full(1000, 0.05), n) * 0.2
    probs[:, FLOWERY] += rng.dirichlet([4.0, 1.0, 1.0], n) * 0.8
    return probs, rng.uniform(0.2, 0.5, n)


def test_the_threshold_keeps_what_the_setting_promises_on_new_garden_photos() -> None:
    rng = np.random.default_rng(0)
    rule = fit_not_flower(*garden(rng, 2000), 0.05, seed=0)
    assert set(FLOWERY) <= set(rule.classes) and len(rule.centroid_reference) == len(rule.imagenet_reference)
    probs, distance = garden(rng, 4000)
    kept = (refusal_score(probs, distance, rule) <= rule.threshold).mean()
    assert 0.93 <= kept <= 0.97


def test_a_photo_far_off_on_either_score_alone_is_refused() -> None:
    rng = np.random.default_rng(1)
    rule = fit_not_flower(*garden(rng, 2000), 0.02, seed=0)
    probs, distance = garden(rng, 3)
    probs[1] = np.full(1000, 1e-3)  # the mass of a car: spread over classes no garden photo uses
    distance[2] = 0.95  # flower-like to ImageNet, but unlike any species the garden taught
    distance[:2] = 0.35
    probs[0] = probs[2] = 0.0
    probs[0, FLOWERY[0]] = probs[2, FLOWERY[0]] = 1.0
    assert (refusal_score(probs, distance, rule) > rule.threshold).tolist() == [False, True, True]


def test_a_rule_without_references_scores_by_imagenet_alone() -> None:
    """Model cards made before the centroid score keep answering as they did."""
    rng = np.random.default_rng(2)
    probs, distance = garden(rng, 50)
    old = NotFlowerRule(FLOWERY, 0.3)
    assert np.array_equal(refusal_score(probs, distance, old), not_flower_score(probs, FLOWERY))
    assert fit_not_flower(probs, None, 0.02, seed=0).centroid_reference == []
