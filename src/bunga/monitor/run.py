"""One monitoring run: every kind and model version with predictions in the window, checked against
its reference profile, with live accuracy from visitors' feedback."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from bunga.errors import BungaError
from bunga.monitor.checks import Thresholds, VersionReport, Window, check_version, live_accuracy, versions
from bunga.schemas import ReferenceProfile

ProfileLookup = Callable[[str, str, str], ReferenceProfile | None]  # (kind, model, version) -> profile


def run_checks(
    db_path: Path, inbox: Path, window: Window, thresholds: Thresholds, profile_of: ProfileLookup
) -> tuple[list[VersionReport], dict[tuple[str, str], ReferenceProfile]]:
    """Reports per (kind, version), and the profiles they were checked against."""
    if not db_path.is_file():
        raise BungaError(f"no prediction log at {db_path}: serve some predictions first (BUNGA_MONITOR_DB)")
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
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
