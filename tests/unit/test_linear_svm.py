"""bunga's own linear SVM solves the problem scikit-learn's LinearSVC solves, without copying the data."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.svm import LinearSVC

from bunga.models.linear_svm import Problem, fit, minimise
from bunga.models.unit_rows import l2_normalise


def _embeddings(classes: int, seed: int, rows: int = 300, dim: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping unit-length clusters with a shared mean direction and unequal class sizes, like
    a backbone's embeddings."""
    rng = np.random.default_rng(seed)
    names = np.array([f"k{i}" for i in range(classes)])
    y = names[rng.choice(classes, size=rows, p=np.linspace(1, 2, classes) / np.linspace(1, 2, classes).sum())]
    centres = rng.normal(size=(classes, dim))
    x = 4.0 + centres[np.searchsorted(names, y)] + 3.0 * rng.normal(size=(rows, dim))
    return l2_normalise(x).astype(np.float32), y


@pytest.mark.parametrize("classes", [2, 4])
@pytest.mark.parametrize("c", [0.3, 3.0])
def test_margins_match_liblinear(classes: int, c: float) -> None:
    z, y = _embeddings(classes, seed=classes)
    names = sorted(set(y))
    (ours,) = fit(z, y, [Problem(c, np.ones(len(y), dtype=bool), names)])
    reference = LinearSVC(C=c, class_weight="balanced", tol=1e-8, max_iter=100_000).fit(z, y)
    expected = reference.decision_function(z)
    got = ours.margins(z)
    if classes == 2:
        expected = np.column_stack([-expected / 2, expected / 2])
    spread = float(np.abs(expected).max())
    assert np.abs(got - expected).max() < 0.01 * spread
    assert (got.argmax(axis=1) == expected.argmax(axis=1)).mean() > 0.99
    assert 0.0 < (got.argmax(axis=1) == np.searchsorted(names, y)).mean() < 1.0  # overlapping: not trivial


def test_rows_outside_a_problem_are_ignored_and_problems_fit_together() -> None:
    z, y = _embeddings(3, seed=7)
    names = sorted(set(y))
    rows = np.arange(len(y)) % 3 != 0
    held = y != names[0]
    together = fit(z, y, [Problem(1.0, rows, names), Problem(1.0, held, names[1:])])
    alone = fit(z[rows], y[rows], [Problem(1.0, np.ones(int(rows.sum()), dtype=bool), names)])[0]
    subset = fit(z[held], y[held], [Problem(1.0, np.ones(int(held.sum()), dtype=bool), names[1:])])[0]
    assert together[0].classes == names and together[1].classes == names[1:]
    assert np.abs(together[0].margins(z) - alone.margins(z)).max() < 0.02
    assert np.abs(together[1].margins(z) - subset.margins(z)).max() < 0.02


def test_minimise_finds_the_minimum_of_an_ill_conditioned_quadratic() -> None:
    rng = np.random.default_rng(3)
    basis, _ = np.linalg.qr(rng.normal(size=(40, 40)))
    hessian = basis @ np.diag(np.logspace(0, 3, 40)) @ basis.T
    target = rng.normal(size=40)

    def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
        gap = x - target
        return 0.5 * float(gap @ hessian @ gap), hessian @ gap

    found = minimise(objective, np.zeros(40), 1e-8, 5000, 10)
    np.testing.assert_allclose(found, target, atol=1e-5)
