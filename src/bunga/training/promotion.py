"""The way a candidate becomes the champion: evaluate registered versions on the current test
split, gate them against the champion, move the registry aliases (promote, roll back), and decide
whether a kind needs retraining at all."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from bunga.config import DataKind
from bunga.data.dataset import MeasurementSet, PhotoSet, hold_back_scarce, holdout_mask, load_measurements, load_photos
from bunga.errors import BungaError
from bunga.imaging import photo_tensor
from bunga.predict import Predictor
from bunga.schemas import EvaluationReport, GateDecision
from bunga.tracking import Tracker
from bunga.training.evaluate import evaluate, gate
from bunga.training.train import ALIAS_CHALLENGER, ALIAS_CHAMPION, ALIAS_PREVIOUS, TrainConfig


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
        paths = data.paths[start : start + batch_size]
        batch = np.stack([photo_tensor(p, max_pixels, size=predictor.input_size) for p in paths])
        out.extend(predictor.predict(batch))
    return out


def current_test_set(kind: DataKind, dataset_dir: Path, test_size: float, seed: int) -> MeasurementSet | PhotoSet:
    """The fixed test split of the current dataset."""
    if kind == "measurements":
        m = load_measurements(dataset_dir)
        return m.subset(holdout_mask(m.ids, m.y, test_size, seed))
    p, _ = hold_back_scarce(load_photos(dataset_dir))  # the species training held back, as it did
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


def retrain_reason(tracker: Tracker, model_name: str, kind: DataKind, digest: str, report: Path) -> str | None:
    """Why a kind needs retraining (no champion, new data, an alarm in the last monitoring report),
    or None when its champion is up to date."""
    champion = tracker.version(model_name, ALIAS_CHAMPION)
    if champion is None:
        return "no champion yet"
    trained_on = champion.tags.get("dataset_digest", "")
    if trained_on != digest:
        return f"the dataset changed since the champion was trained ({trained_on[:12] or '?'} -> {digest[:12]})"
    if report.exists():
        alarms = [a for a in report_alarms(report) if a.startswith(f"{kind} ")]
        if alarms:
            return f"the last monitoring report alarmed: {alarms[0]}"
    return None


def report_alarms(report: Path) -> list[str]:
    """The alarms of a `bunga monitor` JSON report; BungaError naming the file and what is wrong with
    it when it cannot be read (an unreadable report must not pass for one without alarms)."""
    fix = "run `bunga monitor` again, or remove the file to retrain on new data only"
    try:
        data = json.loads(report.read_text("utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise BungaError(f"{report} cannot be read ({type(err).__name__}): {fix}") from None
    except ValueError as err:
        raise BungaError(f"{report} is not valid JSON (truncated?: {err}): {fix}") from None
    alarms = data.get("alarms") if isinstance(data, dict) else None
    if not isinstance(alarms, list) or not all(isinstance(a, str) for a in alarms):
        raise BungaError(f"{report} is not a monitoring report (no list of alarms): {fix}")
    return alarms
