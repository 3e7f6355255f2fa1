"""The checks of `bunga monitor`: a window of logged predictions against the model's reference
profile. Rows are streamed from the log in chunks and reduced to counts, so memory does not grow
with the window."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from bunga.monitor.log import PHONE_ARM
from bunga.monitor.store import Store, columns
from bunga.schemas import FEATURES, NOT_A_FLOWER, ReferenceProfile

CHUNK = 50_000
EPS = 1e-4
PSI_BINS = 10
CHART_BINS = 20  # bins of the report's distribution charts
DAY_S = 86_400.0
SERVER, PHONE = "server", "phone"  # whose answers a report covers: the server's arms, or phones' claims
SOURCES = {SERVER: f"arm <> '{PHONE_ARM}'", PHONE: f"arm = '{PHONE_ARM}'"}


@dataclass
class Window:
    """Which predictions to look at."""

    since: float | None = None  # unix time
    until: float | None = None
    last: int | None = None  # the last N predictions of each kind and version


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


def psi(actual: np.ndarray, expected: np.ndarray) -> float:
    """Population stability index of two distributions over the same bins (shares)."""
    a, e = np.clip(actual, EPS, None), np.clip(expected, EPS, None)
    return float(np.sum((a - e) * np.log(a / e)))


def shares_p_value(window: np.ndarray, reference: np.ndarray, n: int, reference_n: int) -> float:
    """How likely the window's shares are under the reference's, from sampling noise alone (Pearson's
    chi-square on the counts, the reference's own sample size counted as for KS). PSI alone cannot
    tell: on 40 rows and 10 bins one empty bin (1.5 % likely each) gives a PSI near 0.7, so a PSI over
    the alarm level raises an alarm only when noise is unlikely to explain it."""
    kept = reference > 0
    if n == 0 or kept.sum() < 2:
        return 1.0
    expected = n * reference[kept]
    chi2 = float(np.sum((n * window[kept] - expected) ** 2 / expected)) * reference_n / (n + reference_n)
    return float(stats.chi2.sf(chi2, int(kept.sum()) - 1))


def reference_cdf(quantiles: np.ndarray, at: np.ndarray) -> np.ndarray:
    """The reference's CDF at ``at``, from its evenly spaced quantiles (ties handled)."""
    return (np.searchsorted(quantiles, at, side="right") - 1).clip(0) / (len(quantiles) - 1)


def binned_ks(counts: np.ndarray, quantiles: np.ndarray, reference_n: int) -> tuple[float, float]:
    """KS statistic and p-value of a window against the reference; the window is given as counts in
    the bins the reference's inner quantiles make (``x <= edge`` falls at or left of the edge)."""
    n = int(counts.sum())
    if n == 0:
        return 0.0, 1.0
    edges = quantiles[1:-1]
    window_cdf = np.cumsum(counts)[: len(edges)] / n
    d = float(np.max(np.abs(window_cdf - reference_cdf(quantiles, edges))))
    effective = n * reference_n / (n + reference_n)
    return d, float(stats.kstwo.sf(d, max(1, round(effective))))


def binned_shares(counts: np.ndarray, quantiles: np.ndarray, bins: int = PSI_BINS) -> tuple[np.ndarray, np.ndarray]:
    """The window's and the reference's shares over ``bins`` bins cut at the reference's quantiles (the
    fine counts are cut at every reference quantile, so coarse edges fall on fine ones)."""
    n = counts.sum()
    step = (len(quantiles) - 1) // bins
    index = np.arange(step, len(quantiles) - 1, step)  # inner quantile positions of the coarse edges
    window = np.diff(np.concatenate([[0.0], np.cumsum(counts)[index - 1] / max(n, 1), [1.0 if n else 0.0]]))
    reference = np.diff(np.concatenate([[0.0], reference_cdf(quantiles, quantiles[index]), [1.0]]))
    return window, reference


def distribution(counts: np.ndarray, quantiles: np.ndarray, bins: int = CHART_BINS) -> dict[str, list[float]]:
    """A window's and the reference's shares over ``bins`` bins cut at the reference's quantiles, with
    the bins' bounds, for a chart."""
    bins = min(bins, len(quantiles) - 1)
    step = (len(quantiles) - 1) // bins
    window, reference = binned_shares(counts, quantiles, bins)
    bounds = quantiles[np.concatenate([np.arange(0, len(quantiles) - 1, step)[: len(window)], [len(quantiles) - 1]])]
    return {"edges": bounds.tolist(), "window": window.tolist(), "reference": reference.tolist()}


def binned_psi(counts: np.ndarray, quantiles: np.ndarray, bins: int = PSI_BINS) -> float:
    """PSI over ``bins`` bins cut at the reference's quantiles."""
    if counts.sum() == 0:
        return 0.0
    return psi(*binned_shares(counts, quantiles, bins))


def mmd_test(x: np.ndarray, y: np.ndarray, permutations: int = 200, seed: int = 0) -> tuple[float, float]:
    """Maximum mean discrepancy (RBF kernel, median-distance bandwidth) between two samples, with a
    permutation p-value."""
    pooled = np.concatenate([x, y]).astype(np.float64)
    sq = np.sum(pooled**2, axis=1)
    d2 = np.clip(sq[:, None] + sq[None, :] - 2 * pooled @ pooled.T, 0, None)
    bandwidth = float(np.median(d2[np.triu_indices(len(pooled), 1)])) or 1.0
    k = np.exp(-d2 / bandwidth)
    n = len(x)

    def statistic(order: np.ndarray) -> float:
        a, b = order[:n], order[n:]
        return float(k[np.ix_(a, a)].mean() + k[np.ix_(b, b)].mean() - 2 * k[np.ix_(a, b)].mean())

    observed = statistic(np.arange(len(pooled)))
    rng = np.random.default_rng(seed)
    exceed = sum(statistic(rng.permutation(len(pooled))) >= observed for _ in range(permutations))
    return observed, (exceed + 1) / (permutations + 1)


def window_signatures(db: Store, version: str, window: Window, limit: int = 500) -> np.ndarray:
    """Up to ``limit`` of the newest photo signatures the server logged in the window."""
    where, args = _where(window, "photos", version, SERVER)
    sql = f"SELECT signature FROM predictions WHERE {where} AND signature IS NOT NULL ORDER BY ts DESC LIMIT ?"  # noqa: S608
    cap = min(limit, window.last) if window.last is not None else limit
    rows = db.execute(sql, [*args, cap]).fetchall()
    if not rows:
        return np.empty((0, 0), dtype=np.float32)
    return np.stack([np.frombuffer(r[0], dtype=np.float16) for r in rows]).astype(np.float32)


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float, float]:
    """A proportion with its Wilson score interval."""
    if n == 0:
        return math.nan, math.nan, math.nan
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return p, max(0.0, centre - half), min(1.0, centre + half)


def _where(
    window: Window, kind: str | None = None, version: str | None = None, source: str | None = None
) -> tuple[str, list[Any]]:
    """The WHERE clause (``?`` markers) and its arguments for a window, optionally one kind, version
    and source (the server's answers or the phones')."""
    clauses: list[str] = [SOURCES[source]] if source is not None else ["1 = 1"]
    args: list[Any] = []
    for column, value in (("kind", kind), ("version", version)):
        if value is not None:
            clauses.append(f"{column} = ?")
            args.append(value)
    if window.since is not None:
        clauses.append("ts >= ?")
        args.append(window.since)
    if window.until is not None:
        clauses.append("ts < ?")
        args.append(window.until)
    return " AND ".join(clauses), args


def _rows(db: Store, columns: str, kind: str, version: str, source: str, window: Window) -> Any:
    where, args = _where(window, kind, version, source)
    if window.last is not None:  # the last N: newest first, then streamed
        sql = f"SELECT {columns} FROM predictions WHERE {where} ORDER BY ts DESC LIMIT ?"  # noqa: S608
        return db.execute(sql, [*args, window.last])
    return db.execute(f"SELECT {columns} FROM predictions WHERE {where}", args)  # noqa: S608


def versions(db: Store, window: Window) -> list[tuple[str, str, str, str]]:
    """(kind, model, version, source) with predictions in the window, the server's before the phones'."""
    where, args = _where(window)
    source = f"CASE WHEN arm = '{PHONE_ARM}' THEN '{PHONE}' ELSE '{SERVER}' END"
    sql = f"SELECT DISTINCT kind, model, version, {source} FROM predictions WHERE {where} ORDER BY 4 DESC, 1, 3"  # noqa: S608
    return [(str(k), str(m), str(v), str(a)) for k, m, v, a in db.execute(sql, args)]


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
    cursor = _rows(db, select, kind, version, source, window)
    while chunk := cursor.fetchmany(CHUNK):
        data = np.asarray([r[1:3] for r in chunk], dtype=float)
        volume += len(chunk)
        for r in chunk:
            mix[str(r[0])] = mix.get(str(r[0]), 0) + 1
        day_of = (np.asarray([r[7] for r in chunk], dtype=float) // DAY_S).astype(np.int64)
        _count_days(days, day_of, data[:, 1] > 0, [r[8] for r in chunk] if with_band else None)
        known = data[:, 1] > 0
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
    report.daily = _daily(days, quantiles, thresholds.min_volume)
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


@dataclass
class Day:
    """What one UTC day of the window held."""

    volume: int = 0
    recognised: int = 0
    bands: dict[str, int] = field(default_factory=dict)
    features: dict[str, np.ndarray] = field(default_factory=dict)  # counts over the reference's quantile bins


def _count_days(days: dict[int, Day], day_of: np.ndarray, known: np.ndarray, bands: list[Any] | None) -> None:
    for day in np.unique(day_of):
        rows = day_of == day
        entry = days.setdefault(int(day), Day())
        entry.volume += int(rows.sum())
        entry.recognised += int(known[rows].sum())
        if bands is not None:
            for b in np.asarray(bands, dtype=object)[rows]:
                if b is not None:
                    entry.bands[str(b)] = entry.bands.get(str(b), 0) + 1


def _daily(days: dict[int, Day], quantiles: dict[str, np.ndarray], min_volume: int) -> list[dict[str, Any]]:
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


def observation_counts(db: Store, version: str, source: str, window: Window) -> dict[str, int]:
    """How many observations (photos of one plant sent together) a version answered, by number of photos."""
    if "observation_id" not in columns(db):
        return {}
    where, args = _where(window, "photos", version, source)
    sql = (
        f"SELECT observation_photos, COUNT(DISTINCT observation_id) FROM predictions "  # noqa: S608
        f"WHERE {where} AND observation_id IS NOT NULL GROUP BY observation_photos"
    )
    return {str(n): int(c) for n, c in db.execute(sql, args).fetchall() if n is not None}


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
