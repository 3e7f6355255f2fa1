"""'This is not a flower': a score from the backbone's own ImageNet head, calibrated on the training
photos. No non-flower photo is needed to fit it, so nothing here is tuned to a particular collection.

The ImageNet classes that the garden's own training photos fall into (on average at least
``MIN_MASS`` of their probability: daisy, pot, vase, bee, greenhouse, ...) are what "looks like one
of our flowers" means to the backbone. The score is the probability a photo puts *outside* those
classes: a car, a face or a plate of food puts nearly all of it there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IMAGENET_OUTPUT = "imagenet"  # the photo graph's output holding the ImageNet probabilities
MIN_MASS = 0.01  # an ImageNet class joins the flower set when training photos give it >= 1 % on average


@dataclass(frozen=True)
class NotFlowerRule:
    """The ImageNet classes that count as flower-like and the score above which a photo is refused."""

    classes: list[int]
    threshold: float


def flower_classes(imagenet: np.ndarray, min_mass: float = MIN_MASS) -> list[int]:
    """ImageNet classes holding at least ``min_mass`` of the photos' probability on average."""
    return [int(i) for i in np.flatnonzero(imagenet.mean(axis=0) >= min_mass)]


def not_flower_score(imagenet: np.ndarray, classes: list[int]) -> np.ndarray:
    """Probability outside the flower-like classes: higher means 'less like a flower'."""
    out: np.ndarray = 1.0 - imagenet[:, classes].sum(axis=1)
    return out


def fit_not_flower(imagenet: np.ndarray, max_refused: float, seed: int) -> NotFlowerRule:
    """The flower set from all training photos; the threshold from scores each half of them gets
    from a set learned on the other half, so it is not set on photos that chose their own classes."""
    order = np.random.default_rng(seed).permutation(len(imagenet))
    halves = (order[: len(order) // 2], order[len(order) // 2 :])
    held_out = [not_flower_score(imagenet[a], flower_classes(imagenet[b])) for a, b in (halves, halves[::-1])]
    scores = np.concatenate(held_out) if min(map(len, halves)) else not_flower_score(imagenet, flower_classes(imagenet))
    return NotFlowerRule(flower_classes(imagenet), float(np.quantile(scores, 1 - max_refused)))
