"""A metric the model layer needs itself (choosing the abstention score), below training's evaluation."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def auroc(scores_known: ArrayLike, scores_unknown: ArrayLike) -> float:
    """Probability that an unknown sample scores higher (more 'unknown') than a known one."""
    known = np.asarray(scores_known, dtype=np.float64)
    unknown = np.asarray(scores_unknown, dtype=np.float64)
    if known.size == 0 or unknown.size == 0:
        return float("nan")
    both = np.concatenate([known, unknown])
    order = both.argsort(kind="mergesort")
    ranks = np.empty_like(order, dtype=np.float64)
    ranks[order] = np.arange(1, both.size + 1)
    for value in np.unique(both):  # average ranks of ties
        tied = both == value
        ranks[tied] = ranks[tied].mean()
    rank_sum = ranks[known.size :].sum()
    return float((rank_sum - unknown.size * (unknown.size + 1) / 2) / (known.size * unknown.size))
