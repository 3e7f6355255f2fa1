"""'This is not a flower' and known-photo retention, through the shipped code: features from
bunga's backbone runner (onnxruntime), the head's cross-validation (`select_head`: out-of-fold
centroid distances) and the rule from `bunga.models.not_flower.fit_not_flower`, as `bunga train`
fits them.
Known photos: ../shared/data/tf_flowers, 5-fold (the rule fitted on 4 folds, kept rate measured on
the fifth). Non-flowers: ../shared/data/nonflower_dev (ImageNet photos: the backbone may have seen
them, so the refusal measured here can be optimistic). Also each flower class held out in turn: how
many photos of a species the model was not taught are called "not a flower" (they should be
"unknown species" instead). Run: python -m benchmarks.quality.not_flower"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import StratifiedKFold

from benchmarks.harness.common import SHARED_FLOWERS, WORK, save
from bunga.files import sha256_file
from bunga.models.backbone import EMBEDDING_DIM
from bunga.models.image import BackboneRunner, EmbeddingCache, embed_photos, fit_head, select_head
from bunga.models.not_flower import NotFlowerRule, fit_not_flower, refusal_score

NONFLOWER = SHARED_FLOWERS.parent / "nonflower_dev"
MAX_REFUSED = 0.02  # the default BUNGA_NOT_FLOWER_MAX_REFUSED


def features(paths: list[Path]) -> np.ndarray:
    """Embedding | ImageNet probabilities of each photo."""
    runner = BackboneRunner(WORK / "cache")
    cache = EmbeddingCache(WORK / "cache", runner.id)
    out, _ = embed_photos([(p, sha256_file(p)) for p in paths], cache, runner, 16, 200_000_000)
    return out


class Fitted:
    """The head and the not-a-flower rule fitted on some flower photos, as `bunga train` fits them."""

    def __init__(self, x: np.ndarray, y: np.ndarray, dim: int = EMBEDDING_DIM) -> None:
        """``x``: embedding (its first ``dim`` columns) | ImageNet probabilities."""
        classes = sorted(set(y))
        self.dim = dim
        selection = select_head(x[:, :dim], y, classes, 3, 0, 0.05)
        self.head = fit_head(x[:, :dim], y, classes, selection.c, selection.temperature)
        self.rule: NotFlowerRule = fit_not_flower(x[:, dim:], selection.centroid_distance, MAX_REFUSED, 0)

    def refused(self, x: np.ndarray) -> np.ndarray:
        """Which photos are called "not a flower"."""
        sims = self.head.scores(x[:, : self.dim])[1]
        return refusal_score(x[:, self.dim :], 1.0 - sims.max(axis=1), self.rule) > self.rule.threshold


def main() -> dict[str, Any]:
    if not SHARED_FLOWERS.is_dir() or not NONFLOWER.is_dir():
        out = {"skipped": "../shared/data/tf_flowers or nonflower_dev is not present"}
        save("not_flower", out)
        return out
    flowers = sorted(SHARED_FLOWERS.glob("*/*.jpg"))
    others = sorted(NONFLOWER.glob("*.jpg"))
    y = np.array([p.parent.name for p in flowers])
    x_flowers, x_others = features(flowers), features(others)
    kept, refused = [], []
    for train, test in StratifiedKFold(5, shuffle=True, random_state=0).split(x_flowers, y):
        fitted = Fitted(x_flowers[train], y[train])
        kept.append(float((~fitted.refused(x_flowers[test])).mean()))
        refused.append(float(fitted.refused(x_others).mean()))
    held_out = {}
    for species in sorted(set(y)):
        fitted = Fitted(x_flowers[y != species], y[y != species])
        held_out[species] = float(fitted.refused(x_flowers[y == species]).mean())
    out = {
        "max_refused_setting": MAX_REFUSED,
        "flowers": len(flowers),
        "nonflowers": len(others),
        "known_kept": float(np.mean(kept)),
        "nonflower_refused": float(np.mean(refused)),
        "per_fold": {"known_kept": kept, "nonflower_refused": refused},
        "unknown_species_called_not_flower": held_out,
    }
    print(out)
    save("not_flower", out)
    return out


if __name__ == "__main__":
    main()
    sys.exit(0)
