"""Every measurement-model family fits, and its ONNX export agrees with scikit-learn (<= 1e-5)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_iris

from bunga.models import tabular
from bunga.models.export import sklearn_to_onnx


@pytest.mark.parametrize("family", tabular.CANDIDATES)
def test_each_family_exports_to_onnx_faithfully(family: str) -> None:
    x, y = load_iris(return_X_y=True)
    labels = np.array(["setosa", "versicolor", "virginica"], dtype=object)[y]
    x = x.copy()
    x[::17, 1] = np.nan  # the imputer is part of the graph too
    model = tabular.build(family, {}, seed=0).fit(x, labels)
    grid = np.random.default_rng(0).uniform(0.1, 8, (500, 4))
    _, diff = sklearn_to_onnx(model, np.vstack([x, grid]))
    assert diff <= 1e-5


def test_unknown_family_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown model"):
        tabular.build("xgboost", {}, seed=0)
