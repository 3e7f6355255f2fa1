"""One monitoring run: every kind and model version with predictions in the window, checked against
its reference profile, with live accuracy from visitors' feedback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bunga.monitor.checks import Thresholds, VersionReport, Window, check_version, live_accuracy, versions
from bunga.monitor.store import open_store
from bunga.schemas import ReferenceProfile

ProfileLookup = Callable[[str, str, str], ReferenceProfile | None]  # (kind, model, version) -> profile


def run_checks(
    target: str | Path, inbox: Path, window: Window, thresholds: Thresholds, profile_of: ProfileLookup
) -> tuple[list[VersionReport], dict[tuple[str, str], ReferenceProfile]]:
    """Reports per (kind, version), and the profiles they were checked against."""
    db = open_store(target, read_only=True)
    try:
        reports, profiles = [], {}
        for kind, model, version in versions(db, window):
            profile = profile_of(kind, model, version)
            if profile is not None:
                profiles[(kind, version)] = profile
            report = check_version(db, kind, model, version, window, profile, thresholds)
            if profile is None:
                report.alarms.append("no reference profile for this version (trained before monitoring existed?)")
            report.live_accuracy = live_accuracy(db, inbox, kind, version)
            reports.append(report)
        return reports, profiles
    finally:
        db.close()
