"""Exploratory (#12): does the photo's distance to the training photos in the embedding (cosine
similarity to the nearest class centroid, or to its k nearest training photos) add to the ImageNet
"outside the flower classes" score for refusing things that are not flowers? tf_flowers 5-fold: each
rule fitted on four folds, measured on the fifth and on ../shared/data/nonflower_dev.
Features come from benchmarks/backbones.py (cached there).
Run: python -m research.not_flower_explore"""

from __future__ import annotations

import numpy as np
from benchmarks.harness.common import SHARED_FLOWERS
from benchmarks.quality.backbones import features
from benchmarks.quality.photo_quality import load
from sklearn.model_selection import StratifiedKFold

from bunga.models.not_flower import fit_not_flower, not_flower_score
from bunga.models.unit_rows import l2_normalise
from research.open_set_explore import knn_distance

NONFLOWER = SHARED_FLOWERS.parent / "nonflower_dev"
MAX_REFUSED = float(__import__("os").environ.get("MAX_REFUSED", "0.02"))


def rank(reference: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Each score's quantile among the reference scores (higher: less like the training photos)."""
    return np.searchsorted(np.sort(reference), scores, side="right") / len(reference)


def main() -> None:
    pairs, y = load(SHARED_FLOWERS)
    f = features("efficientnet-lite0", [p for p, _ in pairs], "tf_flowers")
    nf_paths = sorted(NONFLOWER.glob("*.jpg"))
    g = features("efficientnet-lite0", nf_paths, "nonflower_dev")
    emb, inet = l2_normalise(f[:, :-1000]), f[:, -1000:]
    nf_emb, nf_inet = l2_normalise(g[:, :-1000]), g[:, -1000:]
    results: dict[str, list[tuple[float, float]]] = {}
    for train, test in StratifiedKFold(5, shuffle=True, random_state=0).split(emb, y):
        rule = fit_not_flower(inet[train], None, MAX_REFUSED, 0)  # the ImageNet score's flower set
        classes = sorted(set(y))
        cents = l2_normalise(np.stack([emb[train][y[train] == c].mean(axis=0) for c in classes]))

        # reference (training) scores for each rule, held out the same way bunga's rule is: halves
        half = np.random.default_rng(0).permutation(train)
        a, b = half[: len(half) // 2], half[len(half) // 2 :]
        ref = {
            "imagenet": np.concatenate(
                [
                    not_flower_score(inet[a], fit_not_flower(inet[b], None, MAX_REFUSED, 0).classes),
                    not_flower_score(inet[b], fit_not_flower(inet[a], None, MAX_REFUSED, 0).classes),
                ]
            ),
            "centroid": -(emb[train] @ cents.T).max(axis=1),
            "knn5": knn_distance(emb[train], emb[train], 5, skip_self=True),
        }
        known = {
            "imagenet": not_flower_score(inet[test], rule.classes),
            "centroid": -(emb[test] @ cents.T).max(axis=1),
            "knn5": knn_distance(emb[test], emb[train], 5),
        }
        other = {
            "imagenet": not_flower_score(nf_inet, rule.classes),
            "centroid": -(nf_emb @ cents.T).max(axis=1),
            "knn5": knn_distance(nf_emb, emb[train], 5),
        }
        combos = {
            "imagenet": ["imagenet"],
            "centroid": ["centroid"],
            "knn5": ["knn5"],
            "imagenet+centroid": ["imagenet", "centroid"],
            "imagenet+knn5": ["imagenet", "knn5"],
        }
        for name, parts in combos.items():

            def fisher(ranks: list[np.ndarray], axis: int = 0) -> np.ndarray:
                return -np.sum(np.log(np.clip(1 - np.asarray(ranks), 1e-3, 1)), axis=axis)

            for how, join in (("max", np.max), ("mean", np.mean), ("fisher", fisher)):
                if how != "max" and len(parts) == 1:
                    continue
                r_ref = join([rank(ref[p], ref[p]) for p in parts], axis=0)
                t = np.quantile(r_ref, 1 - MAX_REFUSED)
                kept = float((join([rank(ref[p], known[p]) for p in parts], axis=0) <= t).mean())
                refused = float((join([rank(ref[p], other[p]) for p in parts], axis=0) > t).mean())
                results.setdefault(f"{name} ({how})", []).append((kept, refused))
                s_known = join([rank(ref[p], known[p]) for p in parts], axis=0)
                s_other = join([rank(ref[p], other[p]) for p in parts], axis=0)
                for keep in (0.95, 0.98):  # oracle: the threshold that keeps exactly this share of known photos
                    t_keep = np.quantile(s_known, keep)
                    results.setdefault(f"{name} ({how}) @{keep:.0%} kept", []).append(
                        (keep, float((s_other > t_keep).mean()))
                    )
    for name, rows in results.items():
        kept, refused = np.mean(rows, axis=0)
        print(f"{name}: known kept {kept:.3f}, non-flowers refused {refused:.3f}")


if __name__ == "__main__":
    main()
