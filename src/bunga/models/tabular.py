"""Measurement (Iris-like) models: scikit-learn candidates, cross-validated selection, Optuna tuning."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

CANDIDATES = ("logreg", "random_forest", "svm")


def build(name: str, params: dict[str, Any], seed: int) -> Pipeline:
    """A pipeline: median imputation (fitted on training data only), scaling, classifier."""
    if name == "logreg":
        clf: Any = LogisticRegression(C=params.get("C", 1.0), max_iter=5000)
    elif name == "random_forest":
        clf = RandomForestClassifier(
            n_estimators=params.get("n_estimators", 200),
            max_depth=params.get("max_depth"),
            min_samples_leaf=params.get("min_samples_leaf", 1),
            random_state=seed,
            n_jobs=1,
        )
    elif name == "svm":
        svc = SVC(C=params.get("C", 1.0), gamma=params.get("gamma", "scale"), random_state=seed)
        clf = CalibratedClassifierCV(svc, method="sigmoid", cv=3, ensemble=False)
    else:
        raise ValueError(f"unknown model {name!r} (choose from {', '.join(CANDIDATES)})")
    if name == "random_forest":  # trees need no scaling, and float32 scaling in ONNX would move split points
        return Pipeline([("impute", SimpleImputer(strategy="median")), ("model", clf)])
    return Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler()), ("model", clf)])


@dataclass
class Selection:
    """The cross-validated score of every candidate and the winner."""

    best: str
    params: dict[str, Any]
    scores: dict[str, float] = field(default_factory=dict)
    spreads: dict[str, float] = field(default_factory=dict)


def cv_folds(y: np.ndarray, wanted: int, seed: int) -> StratifiedKFold:
    """Stratified folds, as many as wanted but no more than the rarest class allows."""
    _, counts = np.unique(y, return_counts=True)
    return StratifiedKFold(n_splits=max(2, min(wanted, int(counts.min()))), shuffle=True, random_state=seed)


def cv_score(model: Pipeline, x: np.ndarray, y: np.ndarray, folds: int, seed: int) -> tuple[float, float]:
    """Mean and standard deviation of macro-F1 over stratified folds of the training split."""
    scores = cross_val_score(clone(model), x, y, cv=cv_folds(y, folds, seed), scoring="f1_macro", n_jobs=1)
    return float(scores.mean()), float(scores.std())


def select(x: np.ndarray, y: np.ndarray, folds: int, seed: int) -> Selection:
    """Pick the candidate with the best cross-validated macro-F1 (ties: the simpler, listed first)."""
    selection = Selection(best="", params={})
    for name in CANDIDATES:
        mean, spread = cv_score(build(name, {}, seed), x, y, folds, seed)
        selection.scores[name], selection.spreads[name] = mean, spread
    selection.best = max(CANDIDATES, key=lambda n: (round(selection.scores[n], 6), -CANDIDATES.index(n)))
    return selection


def suggest(trial: Any) -> tuple[str, dict[str, Any]]:
    """Optuna's search space over the three model families."""
    name = trial.suggest_categorical("model", list(CANDIDATES))
    if name == "logreg":
        return name, {"C": trial.suggest_float("C", 1e-3, 1e3, log=True)}
    if name == "random_forest":
        return name, {
            "n_estimators": trial.suggest_int("n_estimators", 50, 400, step=50),
            "max_depth": trial.suggest_int("max_depth", 2, 12),
            "min_samples_leaf": trial.suggest_int("min_samples_leaf", 1, 8),
        }
    return name, {
        "C": trial.suggest_float("C", 1e-2, 1e3, log=True),
        "gamma": trial.suggest_float("gamma", 1e-4, 10, log=True),
    }


def tune(
    x: np.ndarray,
    y: np.ndarray,
    trials: int,
    folds: int,
    seed: int,
    on_trial: Callable[[int, str, dict[str, Any], float], None] | None = None,
) -> Selection:
    """Optuna (TPE, seeded) search maximising cross-validated macro-F1; ``on_trial`` logs each trial."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def objective(trial: Any) -> float:
        name, params = suggest(trial)
        score, _ = cv_score(build(name, params, seed), x, y, folds, seed)
        if on_trial is not None:
            on_trial(trial.number, name, params, score)
        trial.set_user_attr("params", params)
        return score

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=trials)
    best = study.best_trial
    return Selection(
        best=best.params["model"],
        params=best.user_attrs["params"],
        scores={f"trial_{t.number}": float(t.value or 0.0) for t in study.trials},
    )
