"""'This is not a flower': a score from the backbone's own ImageNet head, calibrated on the training
photos. No non-flower photo is needed to fit it, so nothing here is tuned to a particular collection.

The ImageNet classes that the garden's own training photos fall into (on average at least
``MIN_MASS`` of their probability: daisy, pot, vase, bee, greenhouse, ...) are what "looks like one
of our flowers" means to the backbone. The first score is the probability a photo puts *outside*
those classes: a car, a face or a plate of food puts nearly all of it there.

The second is how far the photo's embedding lies from the nearest species centroid (1 - cosine
similarity), which the photo graph computes anyway. Each score becomes a p-value against the
training photos' own held-out scores, and the two are joined by Fisher's method: a photo is refused
when the pair is improbable for a garden photo. Measured on tf_flowers (5-fold, oracle operating
points) against ../shared/data/nonflower_dev: at 98 % of known photos kept the ImageNet score alone
refuses 90.5 % of non-flowers and the pair 95.5 %; at 95 % kept, 97.6 % and 98.8 %
(scripts/not_flower_explore.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

IMAGENET_OUTPUT = "imagenet"  # the photo graph's output holding the ImageNet probabilities
MIN_MASS = 0.01  # an ImageNet class joins the flower set when training photos give it >= 1 % on average
REFERENCE_POINTS = 201  # quantiles kept of each held-out score distribution
P_FLOOR = 1e-3  # the smallest p-value a reference of this size can tell apart


@dataclass(frozen=True)
class NotFlowerRule:
    """The ImageNet classes that count as flower-like, the held-out score distributions of the
    training photos (quantiles; empty in rules made before the centroid score) and the threshold on
    the joined score above which a photo is refused."""

    classes: list[int]
    threshold: float
    imagenet_reference: list[float] = field(default_factory=list)
    centroid_reference: list[float] = field(default_factory=list)


def flower_classes(imagenet: np.ndarray, min_mass: float = MIN_MASS) -> list[int]:
    """ImageNet classes holding at least ``min_mass`` of the photos' probability on average."""
    return [int(i) for i in np.flatnonzero(imagenet.mean(axis=0) >= min_mass)]


def not_flower_score(imagenet: np.ndarray, classes: list[int]) -> np.ndarray:
    """Probability outside the flower-like classes: higher means 'less like a flower'."""
    out: np.ndarray = 1.0 - imagenet[:, classes].sum(axis=1)
    return out


def p_value(scores: np.ndarray, reference: list[float]) -> np.ndarray:
    """Share of training photos scoring at least as high (from the reference quantiles), floored."""
    below = np.interp(scores, reference, np.linspace(0.0, 1.0, len(reference)))
    out: np.ndarray = np.clip(1.0 - below, P_FLOOR, 1.0)
    return out


def refusal_score(imagenet: np.ndarray, centroid_distance: np.ndarray, rule: NotFlowerRule) -> np.ndarray:
    """In [0, 1], higher means 'less like a flower': one minus Fisher's combined p-value of the two
    scores (a rule without references scores by the ImageNet probability alone)."""
    outside = not_flower_score(imagenet, rule.classes)
    return _joined(outside, centroid_distance, rule) if rule.centroid_reference else outside


def _joined(outside: np.ndarray, centroid_distance: np.ndarray, rule: NotFlowerRule) -> np.ndarray:
    s = -np.log(p_value(outside, rule.imagenet_reference) * p_value(centroid_distance, rule.centroid_reference))
    out: np.ndarray = 1.0 - np.exp(-s) * (1.0 + s)  # chi-square with 4 degrees of freedom at 2s
    return out


def _quantiles(scores: np.ndarray) -> list[float]:
    return [float(q) for q in np.quantile(scores, np.linspace(0.0, 1.0, REFERENCE_POINTS))]


def fit_not_flower(
    imagenet: np.ndarray, centroid_distance: np.ndarray | None, max_refused: float, seed: int
) -> NotFlowerRule:
    """The flower set from all training photos. Each photo's ImageNet score comes from a set learned
    on the other half of them, and ``centroid_distance`` must be out-of-fold too, so that neither
    reference holds photos that chose their own classes or centroids; the threshold refuses
    ``max_refused`` of the training photos' joined scores. Without distances: the ImageNet score alone."""
    order = np.random.default_rng(seed).permutation(len(imagenet))
    a, b = order[: len(order) // 2], order[len(order) // 2 :]
    classes = flower_classes(imagenet)
    outside = np.empty(len(imagenet))
    if len(a) and len(b):
        outside[a] = not_flower_score(imagenet[a], flower_classes(imagenet[b]))
        outside[b] = not_flower_score(imagenet[b], flower_classes(imagenet[a]))
    else:
        outside[:] = not_flower_score(imagenet, classes)
    if centroid_distance is None or len(imagenet) < 2:
        return NotFlowerRule(classes, float(np.quantile(outside, 1 - max_refused)))
    references = _quantiles(outside), _quantiles(centroid_distance)
    joined = _joined(outside, centroid_distance, NotFlowerRule(classes, 0.0, *references))
    return NotFlowerRule(classes, float(np.quantile(joined, 1 - max_refused)), *references)
