"""Orchestration: data -> model -> evaluation -> MLflow run -> a registered candidate (the
challenger). Gating, promotion and rollback live in :mod:`bunga.training.promotion`."""

from __future__ import annotations

import platform
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from bunga import __version__
from bunga.bundle import read_bundle, write_bundle
from bunga.bundle_check import answer_rows, record_and_verify
from bunga.config import DataKind
from bunga.data.dataset import (
    MeasurementSet,
    check_classes,
    holdout_mask,
    load_measurements,
)
from bunga.monitor.profile import reference_profile
from bunga.schemas import (
    FEATURES,
    EvaluationReport,
    ModelCard,
)
from bunga.tracking import Tracker
from bunga.training.evaluate import evaluate
from bunga.training.reports import confusion_png

ALIAS_CHAMPION, ALIAS_CHALLENGER, ALIAS_PREVIOUS = "champion", "challenger", "previous"
Say = Callable[[str], None]
PhotoProgress = Callable[[int, int, float], None]


@dataclass
class TrainConfig:
    """Everything one training run depends on (logged in full as the run's config)."""

    kind: DataKind
    dataset_dir: Path
    experiment: str
    model_name: str
    seed: int = 42
    test_size: float = 0.25
    cv_folds: int = 5
    min_f1: float = 0.9
    tolerance: float = 0.02
    cache_dir: Path = Path(".bunga-cache")
    batch_size: int = 16
    max_pixels: int = 50_000_000
    abstain_max_refused: float = 0.05
    not_flower_max_refused: float = 0.02
    sure_precision: float = 0.97
    backbone: str = "efficientnet-lite0"
    tta: bool = False
    tune_trials: int = 0
    model_family: str | None = None
    shuffle_labels: bool = False  # for drills: a deliberately degraded candidate

    def as_params(self) -> dict[str, Any]:
        """The config as flat strings for MLflow params."""
        return {k: str(v) for k, v in asdict(self).items()}


@dataclass
class Candidate:
    """A trained, logged and registered model version."""

    kind: DataKind
    run_id: str
    version: str
    report: EvaluationReport
    card: ModelCard
    timings: dict[str, float] = field(default_factory=dict)


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def environment() -> dict[str, str]:
    """Versions of the packages a run depends on."""
    versions = {"python": platform.python_version(), "bunga": __version__}
    for package in (
        "numpy",
        "scikit-learn",
        "onnxruntime",
        "onnx",
        "skl2onnx",
        "mlflow",
        "torch",
        "pillow",
        "optuna",
        "skops",
        "pandas",
        "pydantic",
        "pyyaml",
    ):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


def requirements(names: list[str]) -> list[str]:
    env = environment()
    return [f"{n}=={env[n]}" for n in names if n in env]


def log_report(run: Any, report: EvaluationReport, folder: Path, prefix: str = "test") -> None:
    run.metrics(
        {
            f"{prefix}_accuracy": report.accuracy,
            f"{prefix}_f1_macro": report.f1_macro,
            f"{prefix}_precision_macro": report.precision_macro,
            f"{prefix}_recall_macro": report.recall_macro,
            f"{prefix}_f1_weighted": report.f1_weighted,
            f"{prefix}_precision_weighted": report.precision_weighted,
            f"{prefix}_recall_weighted": report.recall_weighted,
            **{f"{prefix}_f1_{c}": m.f1 for c, m in report.per_class.items()},
        }
    )
    run.dict(report.model_dump(mode="json"), "evaluation/report.json")
    run.dict({"classes": report.classes, "matrix": report.confusion_matrix}, "evaluation/confusion_matrix.json")
    run.text(text_report(report), "evaluation/classification_report.txt")
    run.file(confusion_png(report, folder / "confusion_matrix.png"), "evaluation")


def text_report(report: EvaluationReport) -> str:
    """A classification report in the familiar plain-text layout."""
    width = max(12, *(len(c) for c in report.classes))
    lines = [f"{'':>{width}}  precision  recall  f1-score  support", ""]
    for name, m in report.per_class.items():
        lines.append(f"{name:>{width}}  {m.precision:9.3f}  {m.recall:6.3f}  {m.f1:8.3f}  {m.support:7d}")
    lines += [
        "",
        f"{'accuracy':>{width}}  {'':9}  {'':6}  {report.accuracy:8.3f}  {report.n_samples:7d}",
        f"{'macro avg':>{width}}  {report.precision_macro:9.3f}  {report.recall_macro:6.3f}  "
        f"{report.f1_macro:8.3f}  {report.n_samples:7d}",
        f"{'weighted avg':>{width}}  {report.precision_weighted:9.3f}  {report.recall_weighted:6.3f}  "
        f"{report.f1_weighted:8.3f}  {report.n_samples:7d}",
    ]
    return "\n".join(lines) + "\n"


def register(
    tracker: Tracker, cfg: TrainConfig, run_id: str, model_uri: str, report: EvaluationReport, digest: str
) -> str:
    version = tracker.register(
        model_uri,
        cfg.model_name,
        {
            "kind": cfg.kind,
            "dataset_digest": digest,
            "test_f1_macro": f"{report.f1_macro:.6f}",
        },
    )
    tracker.set_alias(cfg.model_name, ALIAS_CHALLENGER, version)
    return version


# --------------------------------------------------------------------------------------------
# measurements
# --------------------------------------------------------------------------------------------
def _frame(data: MeasurementSet) -> Any:
    import pandas as pd

    frame = pd.DataFrame(data.x, columns=list(FEATURES))
    frame["species"] = data.y.astype(str)
    return frame


def train_measurements(cfg: TrainConfig, tracker: Tracker, say: Say = lambda _: None) -> Candidate:
    """Select (or tune) a scikit-learn model, evaluate it on the fixed test split, export ONNX,
    log everything and register it as the challenger."""
    import pandas as pd

    from bunga.models import tabular
    from bunga.models.export import sklearn_to_onnx

    data = load_measurements(cfg.dataset_dir)
    classes = check_classes(data.y, "measurements", minimum=4)
    mask = holdout_mask(data.ids, data.y, cfg.test_size, cfg.seed)
    train, test = data.subset(~mask), data.subset(mask)
    y_train = train.y.copy()
    if cfg.shuffle_labels:
        np.random.default_rng(cfg.seed).shuffle(y_train)
    started = time.perf_counter()
    with tracker.run(cfg.experiment, f"measurements-{datetime.now(UTC):%Y%m%d-%H%M%S}") as run:
        run.tags({"kind": cfg.kind, "git_commit": git_commit(), "dataset_digest": data.digest})
        run.params({**cfg.as_params(), "n_train": len(train.ids), "n_test": len(test.ids)})
        run.dict(cfg.as_params(), "config.json")
        run.dict(environment(), "environment.json")
        run.dataset(data.digest, "flowers_dataset", str(data.source.resolve()), _frame(data), targets="species")
        if cfg.tune_trials > 0:

            def log_trial(number: int, name: str, params: dict[str, Any], score: float) -> None:
                with tracker.run(cfg.experiment, f"trial-{number}", nested=True) as child:
                    child.params({"model": name, **params})
                    child.metrics({"cv_f1_macro": score})
                say(f"trial {number}: {name} {params} cv macro-F1 {score:.4f}")

            selection = tabular.tune(train.x, y_train, cfg.tune_trials, cfg.cv_folds, cfg.seed, log_trial)
            family, params = selection.best, selection.params
        else:
            if cfg.model_family:
                family, params = cfg.model_family, {}
                score, spread = tabular.cv_score(
                    tabular.build(family, {}, cfg.seed), train.x, y_train, cfg.cv_folds, cfg.seed
                )
                selection = tabular.Selection(family, {}, {family: score}, {family: spread})
            else:
                selection = tabular.select(train.x, y_train, cfg.cv_folds, cfg.seed)
                family, params = selection.best, {}
            for name, score in selection.scores.items():
                run.metrics({f"cv_f1_macro_{name}": score, f"cv_f1_std_{name}": selection.spreads.get(name, 0.0)})
        say(f"selected {family} {params or ''} by {cfg.cv_folds}-fold CV on {len(train.ids)} training rows")
        model = tabular.build(family, params, cfg.seed).fit(train.x, y_train)
        report = evaluate(list(test.y), list(model.predict(test.x)), classes, "measurements")
        report = report.model_copy(update={"dataset_digest": data.digest})
        onnx_bytes, diff = sklearn_to_onnx(model, test.x)
        train_seconds = time.perf_counter() - started
        run.params({"selected_model": family, **{f"selected_{k}": v for k, v in params.items()}})
        run.metrics({"onnx_max_abs_diff": diff, "train_seconds": train_seconds})
        with tempfile.TemporaryDirectory() as tmp:
            log_report(run, report, Path(tmp))
            card = ModelCard(
                kind="measurements",
                name=cfg.model_name,
                classes=[str(c) for c in model.classes_],
                onnx_sha256="",
                family=family,
                run_id=run.run_id,
                trained_at=datetime.now(UTC).isoformat(),
                dataset_digest=data.digest,
                metrics={"test_f1_macro": report.f1_macro, "test_accuracy": report.accuracy},
                features=list(FEATURES),
                profile=reference_profile(
                    [str(c) for c in model.classes_],
                    train.y.astype(str),
                    model.predict_proba(test.x),
                    {name: train.x[:, i] for i, name in enumerate(FEATURES)},
                ),
            )
            write_bundle(Path(tmp) / "bundle", onnx_bytes, card)
            record_and_verify(Path(tmp) / "bundle", answer_rows(test.x, test.y))
            card, _ = read_bundle(Path(tmp) / "bundle")
            run.folder(Path(tmp) / "bundle", "bunga")
        example = pd.DataFrame(test.x[:3], columns=list(FEATURES))
        model_uri = run.sklearn_model(model, example, requirements(["scikit-learn", "skops", "numpy", "pandas"]))
        run_id = run.run_id
    version = register(tracker, cfg, run_id, model_uri, report, data.digest)
    say(f"registered {cfg.model_name} version {version} as {ALIAS_CHALLENGER}")
    return Candidate("measurements", run_id, version, report, card, {"train_seconds": train_seconds})
