"""Metrics and the promotion gate: pure functions on arrays and reports, no MLflow, no I/O."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bunga.config import DataKind
from bunga.schemas import OTHER_FLOWERS, ClassMetrics, EvaluationReport, GateDecision


def confusion(y_true: Sequence[str], y_pred: Sequence[str], classes: Sequence[str]) -> np.ndarray:
    """Confusion matrix, rows = true class, columns = predicted class, in ``classes`` order."""
    index = {c: i for i, c in enumerate(classes)}
    matrix = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for truth, guess in zip(y_true, y_pred, strict=True):
        if truth in index and guess in index:
            matrix[index[truth], index[guess]] += 1
    return matrix


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out: np.ndarray = np.divide(num, den, out=np.zeros_like(num, dtype=np.float64), where=den > 0)
    return out


def evaluate(y_true: Sequence[str], y_pred: Sequence[str], classes: Sequence[str], kind: DataKind) -> EvaluationReport:
    """Accuracy, macro and weighted precision/recall/F1, per-class metrics and the confusion matrix.

    Classes absent from both truth and predictions do not count in the macro averages, nor does the
    other_flowers pool (a class the model learns and never answers): the gate judges named species.
    """
    if len(y_true) == 0:
        raise ValueError("cannot evaluate on an empty set")
    labels = list(classes) + sorted({*y_true, *y_pred} - set(classes))
    matrix = confusion(y_true, y_pred, labels)
    tp = np.diag(matrix).astype(np.float64)
    support = matrix.sum(axis=1).astype(np.float64)
    predicted = matrix.sum(axis=0).astype(np.float64)
    precision = _safe_div(tp, predicted)
    recall = _safe_div(tp, support)
    f1 = _safe_div(2 * precision * recall, precision + recall)
    present = ((support + predicted) > 0) & (np.asarray(labels) != OTHER_FLOWERS)
    named = [i for i, t in enumerate(y_true) if t != OTHER_FLOWERS]
    pooled = sum(y_pred[i] == OTHER_FLOWERS for i in named)
    weights = support / support.sum()
    per_class = {
        c: ClassMetrics(
            precision=float(precision[i]), recall=float(recall[i]), f1=float(f1[i]), support=int(support[i])
        )
        for i, c in enumerate(labels)
    }
    return EvaluationReport(
        kind=kind,
        n_samples=len(y_true),
        accuracy=float(tp.sum() / len(y_true)),
        precision_macro=float(precision[present].mean()),
        recall_macro=float(recall[present].mean()),
        f1_macro=float(f1[present].mean()),
        precision_weighted=float((precision * weights).sum()),
        recall_weighted=float((recall * weights).sum()),
        f1_weighted=float((f1 * weights).sum()),
        classes=labels,
        per_class=per_class,
        confusion_matrix=matrix.tolist(),
        lost_to_pool=pooled / len(named) if OTHER_FLOWERS in labels and named else None,
    )


def gate(
    candidate: EvaluationReport,
    champion: EvaluationReport | None,
    min_f1: float,
    tolerance: float,
) -> GateDecision:
    """Pass only when the candidate's macro-F1 clears ``min_f1`` and is no worse than the
    champion's (evaluated on the same test split) by more than ``tolerance``."""
    reasons: list[str] = []
    passed = True
    if candidate.f1_macro >= min_f1:
        reasons.append(f"macro-F1 {candidate.f1_macro:.4f} >= threshold {min_f1:.4f}")
    else:
        passed = False
        reasons.append(f"macro-F1 {candidate.f1_macro:.4f} is below the threshold {min_f1:.4f}")
    if champion is None:
        reasons.append("no champion yet: nothing to compare with")
    elif candidate.f1_macro + tolerance >= champion.f1_macro:
        reasons.append(
            f"macro-F1 {candidate.f1_macro:.4f} is within {tolerance:.4f} of the champion's "
            f"{champion.f1_macro:.4f} or better"
        )
    else:
        passed = False
        reasons.append(
            f"macro-F1 {candidate.f1_macro:.4f} is worse than the champion's {champion.f1_macro:.4f} "
            f"by more than the tolerance {tolerance:.4f}"
        )
    return GateDecision(
        passed=passed,
        reasons=reasons,
        candidate_f1=candidate.f1_macro,
        champion_f1=champion.f1_macro if champion else None,
        threshold=min_f1,
        tolerance=tolerance,
    )
