"""Quality charts and the measurement model's quality: 5-fold stratified cross-validated macro-F1 of
every measurement-model family on Fisher's Iris, and confusion matrices (PNG) of cross-validated
predictions for Iris and, when ../shared/data/tf_flowers is present, for the photo model.
Run: python -m benchmarks.quality.quality"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
from sklearn.datasets import load_iris
from sklearn.model_selection import StratifiedKFold, cross_val_predict, cross_val_score

from benchmarks.harness.common import RESULTS, SHARED_FLOWERS, WORK, save
from bunga.models import image, tabular
from bunga.models.backbone import EMBEDDING_DIM
from bunga.training.evaluate import evaluate
from bunga.training.reports import confusion_png


def main() -> dict[str, Any]:
    x, y = load_iris(return_X_y=True)
    labels = np.array(["setosa", "versicolor", "virginica"], dtype=object)[y]
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    out: dict[str, Any] = {"iris": {}}
    for family in tabular.CANDIDATES:
        scores = cross_val_score(tabular.build(family, {}, 0), x, labels, cv=folds, scoring="f1_macro")
        out["iris"][family] = {"f1_macro_mean": float(scores.mean()), "f1_macro_std": float(scores.std())}
        print(f"iris {family}: {scores.mean():.4f} ± {scores.std():.4f}")
    predicted = cross_val_predict(tabular.build("logreg", {}, 0), x, labels, cv=folds)
    report = evaluate(list(labels), list(predicted), ["setosa", "versicolor", "virginica"], "measurements")
    confusion_png(report, RESULTS / "confusion_iris.png", "Iris, logistic regression, 5-fold CV")
    if SHARED_FLOWERS.is_dir():
        from benchmarks.quality.photo_quality import load

        pairs, y_photos = load(SHARED_FLOWERS)
        runner = image.BackboneRunner(WORK / "cache")
        features, _ = image.embed_photos(pairs, image.EmbeddingCache(WORK / "cache", runner.id), runner, 32, 10**9)
        emb = features[:, :EMBEDDING_DIM]  # the head sees the embedding only, as in training
        classes = sorted(set(y_photos))
        predicted_photos = np.empty(len(y_photos), dtype=object)
        for train, test in folds.split(emb, y_photos):
            head = image.fit_head(emb[train], y_photos[train], classes, 1.0)
            predicted_photos[test] = np.asarray(classes)[head.scores(emb[test])[0].argmax(axis=1)]
        photo_report = evaluate(list(y_photos), list(predicted_photos), classes, "photos")
        confusion_png(
            photo_report, RESULTS / "confusion_tf_flowers.png", "tf_flowers, frozen backbone + linear SVM, 5-fold CV"
        )
        out["tf_flowers_f1_macro"] = photo_report.f1_macro
    save("quality", out)
    return out


if __name__ == "__main__":
    main()
    sys.exit(0)
