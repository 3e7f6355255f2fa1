"""Orchestration: data -> model -> evaluation -> MLflow run -> registered candidate; the gate,
promotion and rollback by registry alias."""

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
from bunga.config import DataKind
from bunga.data.dataset import (
    MeasurementSet,
    PhotoSet,
    check_classes,
    holdout_mask,
    load_measurements,
    load_photos,
)
from bunga.errors import BungaError
from bunga.evaluate import evaluate, gate
from bunga.imaging import photo_tensor
from bunga.models.backbone import EMBEDDING_DIM
from bunga.models.export import IMAGE_TOLERANCE
from bunga.models.not_flower import NotFlowerRule, fit_not_flower, not_flower_score
from bunga.models.references import reference_photos
from bunga.models.signature import reference_sample
from bunga.monitor.profile import reference_profile
from bunga.predict import Predictor
from bunga.reports import confusion_png, contact_sheet
from bunga.schemas import (
    FEATURES,
    Abstention,
    EvaluationReport,
    GateDecision,
    ModelCard,
    NotFlower,
    ReferencePhoto,
)
from bunga.tracking import Tracker

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


def _git_commit() -> str:
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
    ):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _requirements(names: list[str]) -> list[str]:
    env = environment()
    return [f"{n}=={env[n]}" for n in names if n in env]


def _log_report(run: Any, report: EvaluationReport, folder: Path, prefix: str = "test") -> None:
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


def _register(
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
        run.tags({"kind": cfg.kind, "git_commit": _git_commit(), "dataset_digest": data.digest})
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
            _log_report(run, report, Path(tmp))
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
            card, _ = read_bundle(Path(tmp) / "bundle")
            run.folder(Path(tmp) / "bundle", "bunga")
        example = pd.DataFrame(test.x[:3], columns=list(FEATURES))
        model_uri = run.sklearn_model(model, example, _requirements(["scikit-learn", "skops", "numpy", "pandas"]))
        run_id = run.run_id
    version = _register(tracker, cfg, run_id, model_uri, report, data.digest)
    say(f"registered {cfg.model_name} version {version} as {ALIAS_CHALLENGER}")
    return Candidate("measurements", run_id, version, report, card, {"train_seconds": train_seconds})


# --------------------------------------------------------------------------------------------
# photos
# --------------------------------------------------------------------------------------------
@dataclass
class PhotoFit:
    """What photo fitting hands to logging: test scores, abstention, graph, facts."""

    backbone: str
    family: str
    computed: int
    embed_seconds: float
    probs: np.ndarray  # test split
    sims: np.ndarray
    method: str
    threshold: float
    params: dict[str, Any]
    open_set: dict[str, dict[str, float]]
    graph: bytes
    checks: dict[str, float]
    cv_metrics: dict[str, float]  # out-of-fold scores of each candidate strength
    not_flower: NotFlowerRule
    test_not_flower_rate: float  # share of the test split's (flower) photos called "not a flower"
    references: dict[str, ReferencePhoto]  # one typical training photo per class, for the page
    signature_sample: list[list[float]]  # monitoring signatures of a sample of training photos


@dataclass
class PhotoSplit:
    """The photos, the fixed test split, the training labels, the classes and the check photos."""

    data: PhotoSet
    mask: np.ndarray  # True: test split
    y_train: np.ndarray
    classes: list[str]
    check_x: np.ndarray  # a few preprocessed test photos to check the exported graph with

    @property
    def pairs(self) -> list[tuple[Path, str]]:
        """(path, sha256) of every photo, in order."""
        return list(zip(self.data.paths, self.data.shas, strict=True))


def _fit_frozen(cfg: TrainConfig, split: PhotoSplit, progress: PhotoProgress | None, say: Say) -> PhotoFit:
    """Frozen backbone embeddings (cached) -> class-balanced linear SVM; its strength, probability
    temperature and abstention thresholds chosen by cross-validation on the training split."""
    from bunga.models import image

    started = time.perf_counter()
    runner = image.BackboneRunner(cfg.cache_dir, tta=cfg.tta)
    cache = image.EmbeddingCache(cfg.cache_dir, runner.id)
    pairs = split.pairs
    embeddings, computed = image.embed_photos(pairs, cache, runner, cfg.batch_size, cfg.max_pixels, progress)
    embed_seconds = time.perf_counter() - started
    say(f"embeddings: {computed} computed, {len(pairs) - computed} from cache ({embed_seconds:.1f} s)")
    mask, y_train, classes = split.mask, split.y_train, split.classes
    features, imagenet = embeddings[:, :EMBEDDING_DIM], embeddings[:, EMBEDDING_DIM:]
    x_train, x_test, y_test = features[~mask], features[mask], split.data.y.astype(str)[mask]
    rule = fit_not_flower(imagenet[~mask], cfg.not_flower_max_refused, cfg.seed)
    test_not_flower = not_flower_score(imagenet[mask], rule.classes) > rule.threshold
    folds = min(cfg.cv_folds, 3)  # 3 strengths x 3 folds: enough to choose, cheap to retrain often
    selection = image.select_head(x_train, y_train, classes, folds, cfg.seed, cfg.abstain_max_refused)
    head = image.fit_head(x_train, y_train, classes, selection.c, selection.temperature)
    probs, sims = head.scores(x_test)
    open_set = (
        image.open_set(
            x_train, y_train, x_test, y_test, classes, selection.c, selection.temperature, cfg.abstain_max_refused
        )
        if len(classes) >= 3
        else {}
    )
    method = max(open_set, key=lambda m: open_set[m]["auroc"]) if open_set else "max_prob"
    graph = image.compose_graph(runner.path, head)
    diff = image.check_graph(graph, runner, head, split.check_x)
    if diff > IMAGE_TOLERANCE:
        raise BungaError(f"the exported photo graph disagrees with its parts by {diff:.2e}")
    return PhotoFit(
        backbone=runner.id,
        family="efficientnet-lite0+linear-svm",
        computed=computed,
        embed_seconds=embed_seconds,
        probs=probs,
        sims=sims,
        method=method,
        threshold=selection.thresholds[method],
        params={
            "head": "linear-svm",
            "head_C": selection.c,
            "head_temperature": selection.temperature,
            "not_flower_classes": len(rule.classes),
            "not_flower_threshold": rule.threshold,
        },
        not_flower=rule,
        references=reference_photos(
            split.data.subset(~mask), x_train, split.data.y.astype(str)[~mask], classes, cfg.max_pixels
        ),
        signature_sample=reference_sample(x_train, cfg.seed),
        test_not_flower_rate=float(test_not_flower.mean()) if len(test_not_flower) else 0.0,
        open_set=open_set,
        graph=graph,
        checks={
            "onnx_max_abs_diff": max(diff, runner.torch_diff),
            "onnx_graph_vs_parts": diff,
            "onnx_backbone_vs_torch": runner.torch_diff,
        },
        cv_metrics={f"cv_f1_macro_C{c:g}": f1 for c, f1 in selection.f1_macro.items()},
    )


def _check_photos(cfg: TrainConfig, data: PhotoSet, mask: np.ndarray) -> np.ndarray:
    """A few preprocessed test photos to check the exported graph against its sources."""
    paths = [data.paths[i] for i in np.flatnonzero(mask)[:4]]
    return np.stack([photo_tensor(p, cfg.max_pixels) for p in paths])


def train_photos(
    cfg: TrainConfig, tracker: Tracker, say: Say = lambda _: None, progress: PhotoProgress | None = None
) -> Candidate:
    """Fit the photo model (frozen backbone + linear head), export the whole graph to ONNX, log
    everything and register it as the challenger."""
    from bunga.models import image

    data = load_photos(cfg.dataset_dir)
    classes = check_classes(data.y, "photos", minimum=3)
    mask = holdout_mask(data.shas, data.y, cfg.test_size, cfg.seed)
    started = time.perf_counter()
    y = data.y.astype(str)
    y_train = y[~mask].copy()
    if cfg.shuffle_labels:
        np.random.default_rng(cfg.seed).shuffle(y_train)
    split = PhotoSplit(data, mask, y_train, classes, _check_photos(cfg, data, mask))
    fit = _fit_frozen(cfg, split, progress, say)
    y_test = y[mask]
    predicted = np.asarray(classes)[fit.probs.argmax(axis=1)]
    report = evaluate(list(y_test), list(predicted), classes, "photos").model_copy(
        update={"dataset_digest": data.digest}
    )
    refused_known = float((image.abstain_score(fit.probs, fit.sims, fit.method) > fit.threshold).mean())
    train_seconds = time.perf_counter() - started
    embed_seconds, computed, open_set = fit.embed_seconds, fit.computed, fit.open_set
    head_seconds = train_seconds - embed_seconds
    with (
        tempfile.TemporaryDirectory() as tmp,
        tracker.run(cfg.experiment, f"photos-{datetime.now(UTC):%Y%m%d-%H%M%S}") as run,
    ):
        folder = Path(tmp)
        run.tags(
            {"kind": cfg.kind, "git_commit": _git_commit(), "dataset_digest": data.digest, "backbone": fit.backbone}
        )
        run.params(
            {
                **cfg.as_params(),
                "n_train": int((~mask).sum()),
                "n_test": int(mask.sum()),
                **fit.params,
                "backbone": fit.backbone,
                "abstain_method": fit.method,
                "abstain_threshold": fit.threshold,
            }
        )
        run.dict(cfg.as_params(), "config.json")
        run.dict(environment(), "environment.json")
        run.dataset(data.digest, "photos", str(data.source.resolve()))
        run.metrics(
            {
                "embed_seconds": embed_seconds,
                "embeddings_computed": computed,
                "head_seconds": head_seconds,
                "train_seconds": train_seconds,
                "test_refused_known": refused_known,
                "test_not_flower_known": fit.test_not_flower_rate,
            }
        )
        for m, values in open_set.items():
            run.metrics({f"open_set_auroc_{m}": values["auroc"], f"open_set_refused_unknown_{m}": values["refused"]})
        _log_report(run, report, folder)
        wrong = [
            (p, t, g)
            for p, t, g in zip(np.asarray(data.paths, dtype=object)[mask], y_test, predicted, strict=True)
            if t != g
        ]
        sheet = contact_sheet(wrong[:60], folder / "misclassified.png")
        if sheet is not None:
            run.file(sheet, "evaluation")
        run.metrics(fit.checks)
        run.metrics(fit.cv_metrics)
        card = ModelCard(
            kind="photos",
            name=cfg.model_name,
            classes=classes,
            onnx_sha256="",
            family=fit.family,
            run_id=run.run_id,
            trained_at=datetime.now(UTC).isoformat(),
            dataset_digest=data.digest,
            metrics={
                "test_f1_macro": report.f1_macro,
                "test_accuracy": report.accuracy,
                **{f"open_set_auroc_{m}": v["auroc"] for m, v in open_set.items()},
            },
            input_size=224,
            backbone=fit.backbone,
            abstention=Abstention(method=fit.method, threshold=fit.threshold),
            not_flower=NotFlower(imagenet_classes=fit.not_flower.classes, threshold=fit.not_flower.threshold),
            references=fit.references,
            profile=reference_profile(
                classes,
                y[~mask],
                fit.probs,
                recognised=image.abstain_score(fit.probs, fit.sims, fit.method) <= fit.threshold,
                signature_sample=fit.signature_sample,
            ),
        )
        write_bundle(folder / "bundle", fit.graph, card)
        card, model_path = read_bundle(folder / "bundle")
        run.folder(folder / "bundle", "bunga")
        predictor = Predictor(folder / "bundle")
        check_x = split.check_x[:1]
        out = predictor.predict_proba(check_x)
        model_uri = run.onnx_model(model_path, check_x, out, _requirements(["onnxruntime", "numpy", "onnx"]))
        run_id = run.run_id
    version = _register(tracker, cfg, run_id, model_uri, report, data.digest)
    log_seconds = time.perf_counter() - started - train_seconds
    say(
        f"registered {cfg.model_name} version {version} as {ALIAS_CHALLENGER}; time: embeddings {embed_seconds:.1f} s, "
        f"head, evaluation and export {head_seconds:.1f} s, logging {log_seconds:.1f} s"
    )
    timings = {"embed_seconds": embed_seconds, "head_seconds": head_seconds, "log_seconds": log_seconds}
    return Candidate("photos", run_id, version, report, card, {**timings, "computed": computed})


# --------------------------------------------------------------------------------------------
# evaluation of registered versions, the gate, promotion
# --------------------------------------------------------------------------------------------
def fetch(tracker: Tracker, name: str, ref: str, cache_dir: Path) -> tuple[Predictor, str] | None:
    """Download (once) and load the bundle a registry reference points at; None when it points nowhere."""
    info = tracker.version(name, ref)
    if info is None:
        return None
    folder = tracker.download_bundle(info.run_id, cache_dir / "bundles")
    return Predictor(folder), info.version


def predict_set(
    predictor: Predictor, data: MeasurementSet | PhotoSet, max_pixels: int, batch_size: int = 16
) -> list[str]:
    """Predictions of an exported model on a measurement or photo set."""
    if isinstance(data, MeasurementSet):
        if predictor.kind != "measurements":
            raise BungaError("that model is a photo model: pass photos with --data")
        return predictor.predict(data.x)
    if predictor.kind != "photos":
        raise BungaError("that model is a measurement model: pass a measurement sheet with --data")
    out: list[str] = []
    for start in range(0, len(data.paths), batch_size):
        batch = np.stack([photo_tensor(p, max_pixels) for p in data.paths[start : start + batch_size]])
        out.extend(predictor.predict(batch))
    return out


def current_test_set(kind: DataKind, dataset_dir: Path, test_size: float, seed: int) -> MeasurementSet | PhotoSet:
    """The fixed test split of the current dataset."""
    if kind == "measurements":
        m = load_measurements(dataset_dir)
        return m.subset(holdout_mask(m.ids, m.y, test_size, seed))
    p = load_photos(dataset_dir)
    return p.subset(holdout_mask(p.shas, p.y, test_size, seed))


def evaluate_version(
    predictor: Predictor, data: MeasurementSet | PhotoSet, max_pixels: int, version: str | None = None
) -> EvaluationReport:
    """Evaluate an exported model on a labelled set, through the same ONNX graph serving uses."""
    predicted = predict_set(predictor, data, max_pixels)
    report = evaluate(list(data.y.astype(str)), predicted, predictor.classes, predictor.card.kind)
    return report.model_copy(update={"model_version": version, "dataset_digest": data.digest})


@dataclass
class Decision:
    """The outcome of one promotion attempt."""

    kind: DataKind
    version: str
    gate: GateDecision
    candidate: EvaluationReport
    champion: EvaluationReport | None
    champion_version: str | None
    promoted: bool


def promote(
    cfg: TrainConfig, tracker: Tracker, ref: str = ALIAS_CHALLENGER, who: str = "bunga", dry_run: bool = False
) -> Decision:
    """Gate a version against the champion on the current test split; on a pass move ``champion``
    to it and ``previous`` to the old champion. Every decision is recorded."""
    fetched = fetch(tracker, cfg.model_name, ref, cfg.cache_dir)
    if fetched is None:
        raise BungaError(f"{cfg.model_name}@{ref} does not exist: run `bunga train --kind {cfg.kind}` first")
    candidate, version = fetched
    test = current_test_set(cfg.kind, cfg.dataset_dir, cfg.test_size, cfg.seed)
    cand_report = evaluate_version(candidate, test, cfg.max_pixels, version)
    champ = fetch(tracker, cfg.model_name, ALIAS_CHAMPION, cfg.cache_dir)
    champ_report, champ_version = None, None
    if champ is not None and champ[1] != version:
        champ_version = champ[1]
        champ_report = evaluate_version(champ[0], test, cfg.max_pixels, champ_version)
    decision = gate(cand_report, champ_report, cfg.min_f1, cfg.tolerance)
    promoted = decision.passed and not dry_run and champ_version != version
    if promoted:
        if champ_version is not None:
            tracker.set_alias(cfg.model_name, ALIAS_PREVIOUS, champ_version)
        tracker.set_alias(cfg.model_name, ALIAS_CHAMPION, version)
    record = {
        "action": "promote",
        "version": version,
        "passed": decision.passed,
        "promoted": promoted,
        "reasons": decision.reasons,
        "candidate_f1": decision.candidate_f1,
        "champion_version": champ_version,
        "champion_f1": decision.champion_f1,
        "test_digest": test.digest,
        "who": who,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if not dry_run:
        tracker.tag_version(
            cfg.model_name,
            version,
            {
                "gate": "passed" if decision.passed else "refused",
                "gate_reasons": " | ".join(decision.reasons),
                "gate_f1_macro": f"{decision.candidate_f1:.6f}",
            },
        )
        tracker.record_decision(cfg.model_name, record)
    return Decision(cfg.kind, version, decision, cand_report, champ_report, champ_version, promoted)


def rollback(cfg: TrainConfig, tracker: Tracker, who: str = "bunga") -> tuple[str, str]:
    """Swap ``champion`` and ``previous``; returns (new champion, new previous)."""
    champion = tracker.version(cfg.model_name, ALIAS_CHAMPION)
    previous = tracker.version(cfg.model_name, ALIAS_PREVIOUS)
    if champion is None or previous is None:
        raise BungaError(f"{cfg.model_name} has no previous champion to roll back to")
    tracker.set_alias(cfg.model_name, ALIAS_CHAMPION, previous.version)
    tracker.set_alias(cfg.model_name, ALIAS_PREVIOUS, champion.version)
    tracker.record_decision(
        cfg.model_name,
        {
            "action": "rollback",
            "version": previous.version,
            "from_version": champion.version,
            "who": who,
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
        },
    )
    return previous.version, champion.version
