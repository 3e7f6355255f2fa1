"""Live accuracy: how often visitors' labelled feedback agrees with what the server answered."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from bunga.monitor.queries import SERVER, SOURCES
from bunga.monitor.store import Store
from bunga.schemas import NOT_A_FLOWER


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float, float]:
    """A proportion with its Wilson score interval."""
    if n == 0:
        return math.nan, math.nan, math.nan
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return p, max(0.0, centre - half), min(1.0, centre + half)


def live_accuracy(db: Store, inbox: Path, kind: str, version: str) -> tuple[float, float, float, int] | None:
    """Share of visitors' labelled feedback that agrees with the server's answer (``live_scores``)."""
    overall, _ = live_scores(db, inbox, kind, version)
    return overall


def live_scores(
    db: Store, inbox: Path, kind: str, version: str
) -> tuple[tuple[float, float, float, int] | None, list[dict[str, Any]]]:
    """Share of visitors' labelled feedback that agrees with what the server answered, for one version.

    The server's answer is the one it stored with the feedback (computed when the photo or the values
    arrived), or for older photo records its logged answer to the same photo (by sha256; phones' rows
    never count). What the visitor's page claims it was told (``predicted``) is never scored."""
    folder = inbox / kind
    if not folder.is_dir():
        return None, []
    right = total = 0
    by_day: dict[str, list[int]] = {}
    for path in sorted(folder.glob("*.json")):
        try:
            record = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError):
            continue
        label = record.get("label") if isinstance(record, dict) else None
        if not isinstance(label, str) or not label or label == NOT_A_FLOWER:
            continue
        predicted, answered_by = record.get("answer_species"), record.get("answer_version")
        if answered_by is None and kind == "photos" and isinstance(record.get("sha256"), str):
            row = db.execute(  # the server's own answer: a phone's is a claim, never a fact to score
                f"SELECT predicted, version FROM predictions WHERE photo_sha256 = ? AND kind = 'photos' "  # noqa: S608
                f"AND {SOURCES[SERVER]} ORDER BY ts DESC LIMIT 1",
                (record["sha256"],),
            ).fetchone()
            if row is not None:
                predicted, answered_by = row
        if answered_by != version:
            continue
        total += 1
        right += int(predicted == label)
        day = str(record.get("time", ""))[:10] or "unknown"
        tally = by_day.setdefault(day, [0, 0])
        tally[0] += int(predicted == label)
        tally[1] += 1
    if total == 0:
        return None, []
    p, low, high = wilson(right, total)
    daily = [
        {"day": day, "right": r, "total": n, **dict(zip(("share", "low", "high"), wilson(r, n), strict=True))}
        for day, (r, n) in sorted(by_day.items())
    ]
    return (p, low, high, total), daily
