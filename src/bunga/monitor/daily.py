"""Per UTC day of a monitoring window: volume, recognised share, band shares and each feature's PSI,
counted as the window streams by."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from bunga.monitor.drift import binned_psi

DAY_S = 86_400.0


@dataclass
class Day:
    """What one UTC day of the window held."""

    volume: int = 0
    recognised: int = 0
    bands: dict[str, int] = field(default_factory=dict)
    features: dict[str, np.ndarray] = field(default_factory=dict)  # counts over the reference's quantile bins


def count_days(days: dict[int, Day], day_of: np.ndarray, known: np.ndarray, bands: list[Any] | None) -> None:
    for day in np.unique(day_of):
        rows = day_of == day
        entry = days.setdefault(int(day), Day())
        entry.volume += int(rows.sum())
        entry.recognised += int(known[rows].sum())
        if bands is not None:
            for b in np.asarray(bands, dtype=object)[rows]:
                if b is not None:
                    entry.bands[str(b)] = entry.bands.get(str(b), 0) + 1


def daily_figures(days: dict[int, Day], quantiles: dict[str, np.ndarray], min_volume: int) -> list[dict[str, Any]]:
    """Per day: volume, recognised share, band shares, and each feature's PSI (days with enough rows)."""
    out = []
    for day in sorted(days):
        entry = days[day]
        banded = sum(entry.bands.values())
        out.append(
            {
                "day": datetime.fromtimestamp(day * DAY_S, UTC).date().isoformat(),
                "volume": entry.volume,
                "recognised": entry.recognised / entry.volume if entry.volume else math.nan,
                "bands": {b: n / banded for b, n in sorted(entry.bands.items())} if banded else {},
                "psi": {
                    n: binned_psi(counts, quantiles[n])
                    for n, counts in entry.features.items()
                    if counts.sum() >= min_volume
                },
            }
        )
    return out
