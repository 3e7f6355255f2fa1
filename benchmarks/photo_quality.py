"""Photo model quality on ../shared/data/tf_flowers: 5-fold stratified cross-validated macro-F1 of the
frozen EfficientNet-Lite0 + head and of the fine-tuned last blocks (the code `bunga train` runs, with
its calibration slice), and the open-set (unknown species) AUROC of both abstention scores.
Run: python -m benchmarks.photo_quality [fine-tuned block counts, default 1 2]"""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import SHARED_FLOWERS, WORK, save
from bunga.evaluate import evaluate
from bunga.imaging import IMAGE_SUFFIXES
from bunga.models import image


def load(folder: Path) -> tuple[list[tuple[Path, str]], np.ndarray]:
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    pairs = [(p, hashlib.sha256(p.read_bytes()).hexdigest()) for p in paths]
    return pairs, np.array([p.parent.name for p in paths], dtype=object)


def cv_f1(
    x: np.ndarray, y: np.ndarray, classes: list[str], folds: int = 5, seed: int = 0, choose: bool = True
) -> list[float]:
    from sklearn.model_selection import StratifiedKFold

    scores = []
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
        c = image.select_head(x[train], y[train], classes, 3, seed, 0.05).c if choose else 1.0
        head = image.fit_head(x[train], y[train], classes, c)
        predicted = np.asarray(classes)[head.scores(x[test])[0].argmax(axis=1)]
        scores.append(evaluate(list(y[test]), list(predicted), classes, "photos").f1_macro)
    return scores


def fine_tuned_maps(pairs: list[tuple[Path, str]], blocks: int) -> tuple[np.ndarray, np.ndarray, float, int]:
    """Feature maps (and mirrored maps) of every photo for fine-tuning the last ``blocks`` blocks; also
    the seconds that took and how many photos were not in the cache."""
    from bunga.models import finetune

    runner = finetune.LowerRunner(WORK / "cache", blocks)
    start = time.perf_counter()
    maps, flips, computed = finetune.lower_maps(pairs, WORK / "cache", runner, 32, 10**9)
    return maps, flips, time.perf_counter() - start, computed


def cv_fine_tuned(
    maps: np.ndarray,
    flips: np.ndarray,
    shas: list[str],
    y: np.ndarray,
    classes: list[str],
    blocks: int,
    folds: int = 5,
    seed: int = 0,
) -> tuple[list[float], float]:
    """Macro-F1 per fold of the fine-tuned model as `bunga train --fine-tune-blocks` builds it (trained
    on the fold's training part minus its calibration slice), and the median training time."""
    from sklearn.model_selection import StratifiedKFold

    from bunga.models import finetune

    scores, train_seconds = [], []
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(maps, y):
        start = time.perf_counter()
        tuned = finetune.train_calibrated(
            maps[train], flips[train], y[train], [shas[i] for i in train], classes, blocks, 12, seed, 0.05
        ).tuned
        train_seconds.append(time.perf_counter() - start)
        predicted = np.asarray(classes)[tuned.scores(maps[test])[0].argmax(axis=1)]
        scores.append(evaluate(list(y[test]), list(predicted), classes, "photos").f1_macro)
        print(f"fine-tuned {blocks} block(s), fold {len(scores)}: {scores[-1]:.4f} ({train_seconds[-1]:.0f} s)")
    return scores, float(np.median(train_seconds))


def open_set_fine_tuned(
    maps: np.ndarray,
    flips: np.ndarray,
    shas: list[str],
    y: np.ndarray,
    classes: list[str],
    blocks: int,
    seed: int = 0,
) -> dict[str, float]:
    """Each class held out in turn from a fine-tuned model (trained as `bunga train` does, threshold
    from the calibration slice): AUROC of 1 - max probability, known test photos against every photo
    of the held-out class, and the share of those refused at the threshold."""
    from sklearn.model_selection import train_test_split

    from bunga.evaluate import auroc
    from bunga.models import finetune

    train, test = train_test_split(np.arange(len(y)), test_size=0.25, stratify=y, random_state=seed)
    aurocs, refused = [], []
    for held in classes:
        known = [c for c in classes if c != held]
        pool = train[y[train] != held]
        tuned, threshold, _, _ = finetune.train_calibrated(
            maps[pool], flips[pool], y[pool], [shas[i] for i in pool], known, blocks, 12, seed, 0.05
        )
        s_known = 1 - tuned.scores(maps[test[y[test] != held]])[0].max(axis=1)
        s_unknown = 1 - tuned.scores(maps[y == held])[0].max(axis=1)
        aurocs.append(auroc(s_known, s_unknown))
        refused.append(float((s_unknown > threshold).mean()))
        print(f"open set, fine-tuned {blocks} block(s), {held} held out: AUROC {aurocs[-1]:.3f}")
    return {"auroc": float(np.mean(aurocs)), "refused": float(np.mean(refused))}


def main(fine_tune_blocks: tuple[int, ...] = (1, 2)) -> dict[str, Any]:
    if not SHARED_FLOWERS.is_dir():
        print(f"skipped: {SHARED_FLOWERS} is absent (the photo benchmarks need the shared photos)")
        return {"skipped": True}
    pairs, y = load(SHARED_FLOWERS)
    classes = sorted(set(y))
    out: dict[str, Any] = {"photos": len(pairs), "classes": classes, "variants": {}}
    for tta in (False, True):
        cache_dir = WORK / "cache"
        runner = image.BackboneRunner(cache_dir, tta=tta)
        cache = image.EmbeddingCache(cache_dir, runner.id)
        start = time.perf_counter()
        x, computed = image.embed_photos(pairs, cache, runner, 32, 10**9)
        seconds = time.perf_counter() - start
        for choose in (False, True):
            scores = cv_f1(x, y, classes, choose=choose)
            name = f"svm{'_tuned_c' if choose else '_c1'}{'_flip_tta' if tta else ''}"
            out["variants"][name] = {
                "f1_macro_mean": float(np.mean(scores)),
                "f1_macro_std": float(np.std(scores)),
                "folds": scores,
            }
            print(f"{name}: macro-F1 {np.mean(scores):.4f} ± {np.std(scores):.4f}")
        out[f"embed_seconds{'_tta' if tta else ''}"] = seconds
        out[f"embedded{'_tta' if tta else ''}"] = computed
        if not tta:
            from sklearn.model_selection import train_test_split

            idx_train, idx_test = train_test_split(np.arange(len(y)), test_size=0.25, stratify=y, random_state=0)
            sel = image.select_head(x[idx_train], y[idx_train], classes, 3, 0, 0.05)
            out["open_set"] = image.open_set(
                x[idx_train], y[idx_train], x[idx_test], y[idx_test], classes, sel.c, sel.temperature, 0.05
            )
            print("open set:", out["open_set"])
    shas = [sha for _, sha in pairs]
    for k, blocks in enumerate(fine_tune_blocks):
        maps, flips, map_seconds, computed = fine_tuned_maps(pairs, blocks)
        scores, train_seconds = cv_fine_tuned(maps, flips, shas, y, classes, blocks)
        out["variants"][f"fine_tuned_{blocks}_blocks"] = {
            "f1_macro_mean": float(np.mean(scores)),
            "f1_macro_std": float(np.std(scores)),
            "folds": scores,
            "feature_map_seconds": map_seconds,
            "maps_computed": computed,
            "median_train_seconds": train_seconds,
        }
        print(f"fine_tuned_{blocks}_blocks: macro-F1 {np.mean(scores):.4f} ± {np.std(scores):.4f}")
        if k == 0:  # the open set of the first setting only: one fine-tuning per class
            key = f"max_prob_fine_tuned_{blocks}_blocks"
            out["open_set"][key] = open_set_fine_tuned(maps, flips, shas, y, classes, blocks)
    save("photo_quality", out)
    return out


if __name__ == "__main__":
    main(tuple(int(b) for b in sys.argv[1:]) or (1, 2))
