"""The checks of `bunga monitor`: a window of logged predictions against the model's reference
profile. Rows are streamed from the log in chunks and reduced to counts, so memory does not grow
with the window; the statistics are in ``drift``, the per-day figures in ``daily``."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from bunga.monitor.daily import DAY_S, Day, count_days, daily_figures
from bunga.monitor.drift import binned_ks, binned_shares, distribution, mmd_test, psi, shares_p_value
from bunga.monitor.queries import SERVER, Window, observation_counts, window_rows, window_signatures
from bunga.monitor.store import Store, columns
from bunga.schemas import FEATURES, ReferenceProfile

CHUNK = 50_000


@dataclass
class Thresholds:
    """When a check raises an alarm."""

    psi: float = 0.25
    p_value: float = 0.01
    min_volume: int = 30  # fewer predictions than this: figures only, no distribution alarms


@dataclass
class VersionReport:
    """Every figure for one kind and model version over the window."""

    kind: str
    model: str
    version: str
    source: str  # server (its champion and challenger answers) | phone (answers phones reported)
    volume: int
    class_mix: dict[str, float]
    class_mix_psi: float | None
    recognised_rate: float
    reference_recognised_rate: float | None
    mean_top_prob: float
    estimated_accuracy: tuple[float, float, float]  # estimate, low, high (95 %)
    features: dict[str, dict[str, float]] = field(default_factory=dict)  # name -> psi, ks, p
    confidence_drift: dict[str, float] = field(default_factory=dict)  # ks, p of the top probability
    signature_drift: dict[str, float] = field(default_factory=dict)  # photos: mmd, p, n
    live_accuracy: tuple[float, float, float, int] | None = None  # estimate, low, high, n
    band_shares: dict[str, float] = field(default_factory=dict)  # photos: share of answers per logged band
    # for the report's charts: per feature (and "top_probability") the window's and the reference's shares
    # over bins cut at the reference's quantiles ("edges": the bins' bounds in the feature's own units)
    distributions: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    # per UTC day of the window: day, volume, recognised share, band shares, PSI per feature (enough rows)
    daily: list[dict[str, Any]] = field(default_factory=list)
    # per UTC day a feedback arrived: day, right, total, and the share right with its 95 % interval
    live_daily: list[dict[str, Any]] = field(default_factory=list)
    observations: dict[str, int] = field(default_factory=dict)  # photos: observations by number of photos
    alarms: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def check_version(
    db: Store,
    kind: str,
    model: str,
    version: str,
    window: Window,
    profile: ReferenceProfile | None,
    thresholds: Thresholds,
    source: str = SERVER,
) -> VersionReport:
    """Stream the window once (one source's answers) and reduce it to the report's figures."""
    names = list(profile.feature_quantiles) if profile and kind == "measurements" else []
    quantiles = {n: np.asarray(profile.feature_quantiles[n]) for n in names} if profile else {}
    edges = {n: q[1:-1] for n, q in quantiles.items()}
    feature_counts = {n: np.zeros(len(edges[n]) + 1) for n in names}
    top_quantiles = np.asarray(profile.top_prob_quantiles) if profile else np.array([])
    top_edges = top_quantiles[1:-1]
    top_counts = np.zeros(len(top_edges) + 1)
    mix: dict[str, int] = {}
    volume = recognised = 0
    top_sum = top_sq = 0.0
    known_n = 0
    with_band = kind == "photos" and "band" in columns(db)
    days: dict[int, Day] = {}
    select = "predicted, top_prob, recognised, f1, f2, f3, f4, ts" + (", band" if with_band else "")
    cursor = window_rows(db, select, kind, version, source, window)
    while chunk := cursor.fetchmany(CHUNK):
        data = np.asarray([r[1:3] for r in chunk], dtype=float)
        volume += len(chunk)
        for r in chunk:
            mix[str(r[0])] = mix.get(str(r[0]), 0) + 1
        day_of = (np.asarray([r[7] for r in chunk], dtype=float) // DAY_S).astype(np.int64)
        known = data[:, 1] > 0
        count_days(days, day_of, known, [r[8] for r in chunk] if with_band else None)
        recognised += int(known.sum())
        top = data[:, 0]
        top_known = top[known]
        known_n += len(top_known)
        top_sum, top_sq = top_sum + float(top_known.sum()), top_sq + float((top_known**2).sum())
        if len(top_edges):
            top_counts += np.bincount(np.searchsorted(top_edges, top, side="left"), minlength=len(top_counts))
        if names:
            values = np.asarray([r[3:7] for r in chunk], dtype=float)
            for i, n in enumerate(names):
                column = values[:, FEATURES.index(n)] if n in FEATURES else values[:, i]
                binned = np.searchsorted(edges[n], column, side="left")
                feature_counts[n] += np.bincount(binned, minlength=len(feature_counts[n]))
                for day in np.unique(day_of):
                    counts = days[int(day)].features.setdefault(n, np.zeros(len(feature_counts[n])))
                    counts += np.bincount(binned[day_of == day], minlength=len(counts))
    mean_top = top_sum / known_n if known_n else math.nan
    sd = math.sqrt(max(0.0, top_sq / known_n - mean_top**2)) if known_n else math.nan
    half = 1.96 * sd / math.sqrt(known_n) if known_n else math.nan
    report = VersionReport(
        kind=kind,
        model=model,
        version=version,
        source=source,
        volume=volume,
        class_mix={k: v / volume for k, v in sorted(mix.items())} if volume else {},
        class_mix_psi=None,
        recognised_rate=recognised / volume if volume else math.nan,
        reference_recognised_rate=profile.recognised_rate if profile else None,
        mean_top_prob=mean_top,
        estimated_accuracy=(mean_top, max(0.0, mean_top - half), min(1.0, mean_top + half)),
    )
    if kind == "photos" and volume:
        banded: dict[str, int] = {}
        for entry in days.values():  # the bands the stream already counted per day
            for name, count in entry.bands.items():
                banded[name] = banded.get(name, 0) + count
        total = sum(banded.values())
        report.band_shares = {b: c / total for b, c in sorted(banded.items())} if total else {}
        report.observations = observation_counts(db, version, source, window)
    report.daily = daily_figures(days, quantiles, thresholds.min_volume)
    if profile is not None and volume:
        report.distributions = {n: distribution(feature_counts[n], quantiles[n]) for n in names}
        if len(top_edges):
            report.distributions["top_probability"] = distribution(top_counts, top_quantiles)
    if profile is None or volume == 0:
        return report
    if volume < thresholds.min_volume:
        report.notes.append(f"{volume} predictions: too few to judge drift (at least {thresholds.min_volume})")
        return report
    classes = list(profile.class_priors)
    window_mix = np.asarray([mix.get(c, 0) for c in classes], dtype=float) / max(1, sum(mix.get(c, 0) for c in classes))
    report.class_mix_psi = psi(window_mix, np.asarray([profile.class_priors[c] for c in classes]))
    in_classes = sum(mix.get(c, 0) for c in classes)
    priors = np.asarray([profile.class_priors[c] for c in classes])
    mix_p = shares_p_value(window_mix, priors, in_classes, profile.n)
    if report.class_mix_psi > thresholds.psi and mix_p < thresholds.p_value:
        report.alarms.append(f"class mix moved (PSI {report.class_mix_psi:.2f} > {thresholds.psi}, p {mix_p:.1e})")
    for n in names:
        counts = feature_counts[n]
        shares = binned_shares(counts, quantiles[n])
        value_psi = psi(*shares)
        d, p = binned_ks(counts, quantiles[n], profile.n)
        psi_p = shares_p_value(*shares, int(counts.sum()), profile.n)
        report.features[n] = {"psi": value_psi, "ks": d, "p_value": p, "psi_p_value": psi_p}
        if (value_psi > thresholds.psi and psi_p < thresholds.p_value) or p < thresholds.p_value:
            report.alarms.append(f"{n} drifted (PSI {value_psi:.2f}, KS {d:.2f}, p {p:.1e})")
    if len(top_edges):
        d, p = binned_ks(top_counts, top_quantiles, profile.n)
        report.confidence_drift = {"ks": d, "p_value": p}
        if p < thresholds.p_value:
            report.alarms.append(f"the model's confidence changed (KS {d:.2f}, p {p:.1e})")
    if kind == "photos" and source == SERVER and profile.signature_sample:
        served = window_signatures(db, version, window)
        reference = np.asarray(profile.signature_sample, dtype=np.float32)
        if len(served) >= thresholds.min_volume and served.shape[1] == reference.shape[1]:
            statistic, p = mmd_test(served, reference)
            report.signature_drift = {"mmd": statistic, "p_value": p, "n": float(len(served))}
            if p < thresholds.p_value:
                report.alarms.append(f"photos look unlike the training photos (MMD {statistic:.3f}, p {p:.1e})")
    if kind == "photos":
        expected = profile.recognised_rate
        refused = volume - recognised
        p = float(stats.binomtest(refused, volume, 1 - expected, alternative="greater").pvalue) if expected < 1 else 1.0
        if p < thresholds.p_value:
            report.alarms.append(
                f"more photos not recognised: {refused / volume:.0%} against {1 - expected:.0%} at training (p {p:.1e})"
            )
    return report
