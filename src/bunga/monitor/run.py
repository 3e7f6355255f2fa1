"""One monitoring run: every kind and model version with predictions in the window, checked against
its reference profile, with live accuracy from visitors' feedback; where the profiles come from and
how a run is recorded in MLflow."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from bunga.bundle import read_bundle
from bunga.monitor.checks import Thresholds, VersionReport, check_version
from bunga.monitor.live import live_scores
from bunga.monitor.queries import SERVER, Window, versions
from bunga.monitor.store import open_store
from bunga.schemas import ReferenceProfile
from bunga.tracking import Tracker

ProfileLookup = Callable[[str, str, str], ReferenceProfile | None]  # (kind, model, version) -> profile
Progress = Callable[[int, int, str], None]  # (done, total, what is being checked now)
MONITORING_EXPERIMENT = "bunga-monitoring"


def run_checks(
    target: str | Path,
    inbox: Path,
    window: Window,
    thresholds: Thresholds,
    profile_of: ProfileLookup,
    progress: Progress = lambda done, total, what: None,
) -> tuple[list[VersionReport], dict[tuple[str, str], ReferenceProfile]]:
    """Reports per (kind, version), and the profiles they were checked against."""
    db = open_store(target, read_only=True)
    try:
        reports, profiles = [], {}
        found = versions(db, window)
        for done, (kind, model, version, source) in enumerate(found):
            progress(done, len(found), f"{kind} v{version} ({source})")
            profile = profile_of(kind, model, version)
            if profile is not None:
                profiles[(kind, version)] = profile
            report = check_version(db, kind, model, version, window, profile, thresholds, source)
            if profile is None:
                report.alarms.append("no reference profile for this version (trained before monitoring existed?)")
            if source == SERVER:  # visitors' labels are scored against the server's answers only
                report.live_accuracy, report.live_daily = live_scores(db, inbox, kind, version)
            reports.append(report)
        progress(len(found), len(found), "done")
        return reports, profiles
    finally:
        db.close()


def profile_lookup(model_dir: Path | None, tracker: Callable[[], Tracker], cache_dir: Path) -> ProfileLookup:
    """Reference profiles by (kind, model, version): from exported bundles in ``model_dir`` when the
    version matches, else from the registry (the tracker is only made when needed)."""
    found: dict[tuple[str, str, str], ReferenceProfile | None] = {}

    def lookup(kind: str, model: str, version: str) -> ReferenceProfile | None:
        key = (kind, model, version)
        if key not in found:
            found[key] = None
            folder = model_dir / kind if model_dir else None
            if folder is not None and (folder / "bunga.json").is_file():
                card, _ = read_bundle(folder)
                if version in (card.version, card.onnx_sha256[:12]):
                    found[key] = card.profile
            if found[key] is None and version.isdigit():
                registry = tracker()
                info = registry.version(model, version)
                if info is not None:
                    card, _ = read_bundle(registry.download_bundle(info.run_id, cache_dir / "bundles"))
                    found[key] = card.profile
        return found[key]

    return lookup


def metric_name(text: str) -> str:
    """``text`` as an MLflow metric name: characters MLflow refuses (a version string comes from the
    log, where phones and old clients put it) become ``_``."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:200]


def log_monitoring_run(tracker: Tracker, reports: list[VersionReport], json_path: Path, html_path: Path) -> None:
    """One MLflow run per check in the ``bunga-monitoring`` experiment: figures per kind and version,
    the alarms, both reports; linked to each model version by tags."""
    with tracker.run(MONITORING_EXPERIMENT, f"monitor-{datetime.now(UTC):%Y%m%d-%H%M%S}") as run:
        tags = {f"model_version.{r.kind}": f"{r.model}/{r.version}" for r in reports if r.source == SERVER}
        run.tags({**tags, "alarms": str(sum(len(r.alarms) for r in reports if r.source == SERVER))})
        for r in reports:
            values = {
                "volume": float(r.volume),
                "recognised_rate": r.recognised_rate,
                "mean_top_prob": r.mean_top_prob,
                "estimated_accuracy": r.estimated_accuracy[0],
                "alarms": float(len(r.alarms)),
                **({"live_accuracy": r.live_accuracy[0]} if r.live_accuracy else {}),
                **{f"psi_{n}": f["psi"] for n, f in r.features.items()},
            }
            prefix = metric_name(f"{r.kind}_v{r.version}" + ("" if r.source == SERVER else f"_{r.source}"))
            run.metrics({f"{prefix}_{k}": v for k, v in values.items() if not math.isnan(v)})
        run.file(json_path, "monitoring")
        run.file(html_path, "monitoring")
