"""Photo model quality on ../shared/data/tf_flowers: 5-fold stratified cross-validated macro-F1 of the
frozen EfficientNet-Lite0 embeddings + linear SVM head (the code `bunga train` runs), with and without
mirror-image test-time augmentation, and the open-set (unknown species) AUROC of both abstention scores.
Run: python -m benchmarks.quality.photo_quality"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness.common import SHARED_FLOWERS, WORK, save
from bunga.imaging import IMAGE_SUFFIXES
from bunga.models import image
from bunga.models.backbone import EMBEDDING_DIM
from bunga.training.evaluate import evaluate


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


def held_out_species(x: np.ndarray, y: np.ndarray, classes: list[str]) -> dict[str, dict[str, float]]:
    """Unknown species as every photo benchmark measures them: a stratified 75/25 split (seed 0), the
    head chosen on the 75 % as training chooses it, then each class held out in turn
    (``image.open_set``: AUROC, and share refused where 95 % of known test photos are kept)."""
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(np.arange(len(y)), test_size=0.25, stratify=y, random_state=0)
    sel = image.select_head(x[train], y[train], classes, 3, 0, 0.05)
    return image.open_set(x[train], y[train], x[test], y[test], classes, sel.c, sel.temperature, 0.05)


def main() -> dict[str, Any]:
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
        features, computed = image.embed_photos(pairs, cache, runner, 32, 10**9)
        x = features[:, :EMBEDDING_DIM]  # the head sees the embedding only, as in training
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
            out["open_set"] = held_out_species(x, y, classes)
            print("open set:", out["open_set"])
    save("photo_quality", out)
    return out


if __name__ == "__main__":
    main()
