"""'This is not a flower' and known-photo retention, through the shipped code: features from
bunga's backbone runner (onnxruntime), the rule from `bunga.models.not_flower.fit_not_flower`.
Known photos: ../shared/data/tf_flowers, 5-fold (the rule fitted on 4 folds, kept rate measured on
the fifth). Non-flowers: ../shared/data/nonflower_dev (ImageNet photos: the backbone may have seen
them, so the refusal measured here can be optimistic). Also each flower class held out in turn: how
many photos of a species the model was not taught are called "not a flower" (they should be
"unknown species" instead). Run: python -m benchmarks.not_flower"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import StratifiedKFold

from benchmarks.common import SHARED_FLOWERS, WORK, save
from bunga.files import sha256_file
from bunga.models.backbone import EMBEDDING_DIM
from bunga.models.image import BackboneRunner, EmbeddingCache, embed_photos
from bunga.models.not_flower import fit_not_flower, not_flower_score

NONFLOWER = SHARED_FLOWERS.parent / "nonflower_dev"
MAX_REFUSED = 0.02  # the default BUNGA_NOT_FLOWER_MAX_REFUSED


def imagenet_probs(paths: list[Path]) -> np.ndarray:
    runner = BackboneRunner(WORK / "cache")
    cache = EmbeddingCache(WORK / "cache", runner.id)
    features, _ = embed_photos([(p, sha256_file(p)) for p in paths], cache, runner, 16, 200_000_000)
    return features[:, EMBEDDING_DIM:]


def main() -> dict[str, Any]:
    if not SHARED_FLOWERS.is_dir() or not NONFLOWER.is_dir():
        out = {"skipped": "../shared/data/tf_flowers or nonflower_dev is not present"}
        save("not_flower", out)
        return out
    flowers = sorted(SHARED_FLOWERS.glob("*/*.jpg"))
    others = sorted(NONFLOWER.glob("*.jpg"))
    y = np.array([p.parent.name for p in flowers])
    p_flowers, p_others = imagenet_probs(flowers), imagenet_probs(others)
    kept, refused = [], []
    for train, test in StratifiedKFold(5, shuffle=True, random_state=0).split(p_flowers, y):
        rule = fit_not_flower(p_flowers[train], MAX_REFUSED, seed=0)
        kept.append(float((not_flower_score(p_flowers[test], rule.classes) <= rule.threshold).mean()))
        refused.append(float((not_flower_score(p_others, rule.classes) > rule.threshold).mean()))
    held_out = {}
    for species in sorted(set(y)):
        rule = fit_not_flower(p_flowers[y != species], MAX_REFUSED, seed=0)
        held_out[species] = float((not_flower_score(p_flowers[y == species], rule.classes) > rule.threshold).mean())
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
