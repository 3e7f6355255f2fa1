"""How sure a photo answer is: ``sure`` (the name), ``possible`` (up to three candidates, worded as a
guess), ``not_recognised`` or ``not_a_flower``.

A recognised photo is ``sure`` when its top probability reaches the card's sure threshold. That
threshold is fitted at training, from the training split alone: the out-of-fold probabilities of
known photos, and the top probabilities that photos of a class get from heads trained without that
class (stand-ins for the garden's untaught species). It is the lowest threshold at which, on a mix
weighted like the photos visitors send (``UNKNOWN_PER_KNOWN`` untaught-species photos per known
one), at least ``SURE_PRECISION`` of the sure answers are right. numpy only: serving imports it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SURE, POSSIBLE, NOT_RECOGNISED, NOT_A_FLOWER = "sure", "possible", "not_recognised", "not_a_flower"
BANDS = (SURE, POSSIBLE, NOT_RECOGNISED, NOT_A_FLOWER)
SURE_PRECISION = 0.97
UNKNOWN_PER_KNOWN = 37 / 45  # the mix of known and untaught-species flower photos judged in the photo-trust issue
MAX_CANDIDATES = 3
NEVER = 1.01  # a sure threshold no probability reaches: nothing is sure
NEVER_MARGIN = 1e6  # the same for the margin score (logits of unit-length rows stay far below it)
MIN_SUPPORT = 10  # sure photos a cut-off must leave for its precision to count
CANDIDATE_MIN = 0.05  # a 'possible' answer lists candidates with at least this probability (always the top one)
# What the sure threshold applies to (the card says): the top probability (cards made before the margin),
# or the margin between the two best named logits. Probabilities saturate: with many photos per
# species about 40 % of known photos reach exactly 1.0 in float32, untaught photos too, and no
# threshold separates them; a difference of logits (float64) keeps ranking them.
TOP_PROBABILITY, MARGIN = "top_probability", "margin"
LOGITS_OUTPUT = "logits"  # the graph's output the margin is taken from


@dataclass(frozen=True)
class SureFit:
    """The sure threshold and what it gave on the training split's own hold-outs."""

    threshold: float
    precision: float  # share of sure answers right on the weighted mix
    known_sure: float  # share of known photos answered sure


def fit_sure(
    known_top: np.ndarray,
    known_right: np.ndarray,
    unknown_top: np.ndarray,
    floor: float = 0.0,
    precision: float = SURE_PRECISION,
    unknown_per_known: float = UNKNOWN_PER_KNOWN,
    never: float = NEVER,
) -> SureFit:
    """The lowest top-probability threshold (at least ``floor``) whose sure answers are right at least
    ``precision`` of the time on known photos mixed with untaught ones; NEVER (nothing is sure) when none is."""
    if len(known_top) == 0:
        return SureFit(never, 0.0, 0.0)
    weight = unknown_per_known * len(known_top) / max(len(unknown_top), 1)
    candidates = np.unique(np.concatenate([known_top, unknown_top, [floor]]))
    candidates = candidates[candidates >= floor]
    sorted_known = np.sort(known_top)
    right_sorted = known_right[np.argsort(known_top, kind="stable")].astype(np.int64)
    right_at_or_above = np.concatenate([np.cumsum(right_sorted[::-1])[::-1], [0]])
    start = np.searchsorted(sorted_known, candidates, side="left")
    sure = len(sorted_known) - start
    right = right_at_or_above[start]
    unknown = weight * (len(unknown_top) - np.searchsorted(np.sort(unknown_top), candidates, side="left"))
    mixed = np.where(sure > 0, right / np.maximum(sure + unknown, 1e-12), 1.0)
    # The lowest threshold from which every higher one keeps the precision (noise at one cut-off
    # must not open the band below a stretch where it fails); cut-offs that leave only a handful of
    # sure photos are too noisy to judge either way.
    support = max(MIN_SUPPORT, int(0.05 * len(known_top)))
    failing = np.flatnonzero((mixed < precision) & (sure >= support))
    after = 0 if len(failing) == 0 else int(failing[-1]) + 1
    meeting = np.flatnonzero((mixed >= precision) & (sure >= support) & (np.arange(len(candidates)) >= after))
    if len(meeting):
        first = int(meeting[0])
        return SureFit(float(candidates[first]), float(mixed[first]), float(sure[first] / len(known_top)))
    return SureFit(never, 0.0, 0.0)


def band(recognised: bool, not_flower: bool, top_prob: float, sure_threshold: float | None) -> str:
    """The band of one answer (``sure_threshold`` None: a card without bands, answered as before)."""
    if not_flower:
        return NOT_A_FLOWER
    if not recognised:
        return NOT_RECOGNISED
    return SURE if sure_threshold is None or top_prob >= sure_threshold else POSSIBLE


def recognised(answer_band: str) -> bool:
    """True for the bands that name a species (sure, possible)."""
    return answer_band in (SURE, POSSIBLE)


def logged_label(answer_band: str, species: str, pool_won: bool = False) -> str:
    """What the prediction log and the metrics count an answer as: its top species when recognised,
    else ``_not_a_flower``, ``_other_flowers`` (the pool of flowers the model must never name won) or
    ``_unrecognised``."""
    if recognised(answer_band):
        return species
    if answer_band == NOT_A_FLOWER:
        return "_not_a_flower"
    return "_other_flowers" if pool_won else "_unrecognised"


def named_order(probabilities: np.ndarray, pool: int | None) -> list[int]:
    """Class indices from the most to the least probable, the other_flowers pool left out (an answer
    never names it)."""
    return [int(i) for i in np.argsort(-probabilities) if i != pool]


def pool_index(classes: list[str], pool: str | None) -> int | None:
    """Where the ``pool`` class sits among ``classes`` (None: no pool)."""
    return classes.index(pool) if pool is not None and pool in classes else None


def sure_values(probabilities: np.ndarray, logits: np.ndarray | None, pool: int | None, score: str) -> np.ndarray:
    """Each row's sure score: its top named probability, or (``score`` MARGIN) the margin between its
    two best named logits in float64; 0 where the pool won (never sure)."""
    named = [i for i in range(probabilities.shape[1]) if i != pool]
    won = probabilities.argmax(axis=1) == pool if pool is not None else np.zeros(len(probabilities), dtype=bool)
    if score == MARGIN and logits is not None:
        top2 = np.sort(np.asarray(logits, dtype=np.float64)[:, named], axis=1)[:, -2:]
        values: np.ndarray = top2[:, -1] - (top2[:, 0] if top2.shape[1] > 1 else 0.0)
    else:
        values = np.asarray(probabilities, dtype=np.float64)[:, named].max(axis=1)
    return np.where(won, 0.0, values)


def candidates(probabilities: np.ndarray, pool: int | None = None) -> list[int]:
    """Indices of a possible answer's candidates: the top one, then up to two more above the floor."""
    order = named_order(probabilities, pool)[:MAX_CANDIDATES]
    return [i for n, i in enumerate(order) if n == 0 or probabilities[i] >= CANDIDATE_MIN]
