"""Metrics, the gate and the split: pure functions, checked against scikit-learn and by property."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_score, recall_score, roc_auc_score

from bunga.data.dataset import check_classes, holdout_mask
from bunga.errors import BungaError
from bunga.models.metrics import auroc
from bunga.training.evaluate import evaluate, gate

CLASSES = ["a", "b", "c"]
labels = st.lists(st.sampled_from(CLASSES), min_size=1, max_size=60)


@settings(max_examples=60, deadline=None)
@given(labels, st.randoms(use_true_random=False))
def test_metrics_match_scikit_learn(y_true: list[str], rnd: object) -> None:
    y_pred = [rnd.choice(CLASSES) for _ in y_true]  # type: ignore[attr-defined]
    report = evaluate(y_true, y_pred, CLASSES, "measurements")
    present = sorted(set(y_true) | set(y_pred))
    assert report.accuracy == pytest.approx(accuracy_score(y_true, y_pred))
    for average in ("macro", "weighted"):
        kw = {"labels": present, "average": average, "zero_division": 0}
        assert getattr(report, f"f1_{average}") == pytest.approx(f1_score(y_true, y_pred, **kw))
        assert getattr(report, f"precision_{average}") == pytest.approx(precision_score(y_true, y_pred, **kw))
        assert getattr(report, f"recall_{average}") == pytest.approx(recall_score(y_true, y_pred, **kw))
    assert report.confusion_matrix == confusion_matrix(y_true, y_pred, labels=CLASSES).tolist()
    assert sum(m.support for m in report.per_class.values()) == len(y_true)


def test_unknown_predicted_labels_count_against_the_model() -> None:
    report = evaluate(["a", "b"], ["a", "zzz"], ["a", "b"], "photos")
    assert report.accuracy == 0.5 and "zzz" in report.classes


def test_empty_evaluation_is_refused() -> None:
    with pytest.raises(ValueError):
        evaluate([], [], CLASSES, "photos")


def _report(f1: float) -> object:
    # a perfectly balanced report with the wanted macro-F1 is not needed: only f1_macro is read
    base = evaluate(["a", "b"], ["a", "b"], ["a", "b"], "measurements")
    return base.model_copy(update={"f1_macro": f1})


@pytest.mark.parametrize(
    ("candidate", "champion", "passed"),
    [
        (0.95, None, True),
        (0.85, None, False),
        (0.95, 0.96, True),  # within the tolerance
        (0.93, 0.96, False),  # worse by more than the tolerance
        (0.99, 0.96, True),
        (0.80, 0.70, False),  # better than the champion but below the floor
    ],
)
def test_gate(candidate: float, champion: float | None, passed: bool) -> None:
    decision = gate(_report(candidate), _report(champion) if champion else None, 0.9, 0.02)  # type: ignore[arg-type]
    assert decision.passed is passed
    assert len(decision.reasons) == 2


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=30), st.lists(st.floats(0, 1), min_size=1, max_size=30))
def test_auroc_matches_scikit_learn(known: list[float], unknown: list[float]) -> None:
    y = [0] * len(known) + [1] * len(unknown)
    assert auroc(known, unknown) == pytest.approx(roc_auc_score(y, known + unknown))


def test_holdout_is_stratified_stable_and_order_independent() -> None:
    keys = [f"k{i}" for i in range(90)]
    y = np.array(["a"] * 30 + ["b"] * 60, dtype=object)
    mask = holdout_mask(keys, y, 0.25, seed=7)
    assert mask[y == "a"].sum() == 8 and mask[y == "b"].sum() == 15
    order = np.random.default_rng(0).permutation(90)
    shuffled = holdout_mask([keys[i] for i in order], y[order], 0.25, seed=7)
    assert {keys[i] for i in order[shuffled]} == {keys[i] for i in np.flatnonzero(mask)}
    grown = holdout_mask([*keys, "new1", "new2"], np.append(y, ["a", "b"]), 0.25, seed=7)
    assert (grown[:90] == mask).mean() > 0.95  # new data hardly moves old items across the split
    assert not np.array_equal(holdout_mask(keys, y, 0.25, seed=8), mask)


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ([], "has no photos"),
        (["a"] * 5, "only one class"),
        (["a"] * 5 + ["b"], r"too few photos in class b \(1\)"),
    ],
)
def test_check_classes_explains_what_to_fix(labels: list[str], message: str) -> None:
    with pytest.raises(BungaError, match=message):
        check_classes(np.array(labels, dtype=object), "photos", minimum=3)
