"""The monitoring report: the same figures as JSON and as one self-contained HTML page (inline SVG,
no scripts, no CDN)."""

from __future__ import annotations

import html
import json
import math
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bunga.files import atomic_write_text
from bunga.monitor import charts
from bunga.monitor.checks import VersionReport
from bunga.monitor.queries import SERVER
from bunga.schemas import ReferenceProfile


def _clean(value: Any) -> Any:
    """JSON without NaN (null instead)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def as_json(reports: list[VersionReport], window: dict[str, Any]) -> dict[str, Any]:
    """The report as plain data."""
    data: dict[str, Any] = _clean(
        {
            "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "window": window,
            "alarms": [f"{r.kind} v{r.version}: {a}" for r in reports if r.source == SERVER for a in r.alarms],
            # answers phones reported are claims: their alarms are shown, never acted on (no retraining)
            "phone_alarms": [f"{r.kind} v{r.version}: {a}" for r in reports if r.source != SERVER for a in r.alarms],
            "versions": [asdict(r) for r in reports],
        }
    )
    return data


def _pct(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.1%}"


def write(
    reports: list[VersionReport],
    profiles: dict[tuple[str, str], ReferenceProfile],
    window: dict[str, Any],
    out: Path,
    psi_alarm: float = 0.25,
) -> tuple[Path, Path]:
    """Write ``monitor-report.json`` and ``monitor-report.html`` into ``out``."""
    data = as_json(reports, window)
    out.mkdir(parents=True, exist_ok=True)
    json_path, html_path = out / "monitor-report.json", out / "monitor-report.html"
    atomic_write_text(json_path, json.dumps(data, indent=2) + "\n")
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>bunga monitoring</title>",
        "<style>body{font-family:sans-serif;max-width:60rem;margin:1rem auto;padding:0 1rem}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2rem .5rem;text-align:left}"
        ".alarm{color:#b71c1c;font-weight:bold}.charts{display:flex;flex-wrap:wrap;gap:1rem}"
        "svg.chart{max-width:100%;height:auto}</style></head><body>",
        f"<h1>bunga monitoring</h1><p>Generated {html.escape(data['generated_at'])}; window "
        f"{html.escape(json.dumps(window))}.</p>",
    ]
    parts.append(
        "<p class='alarm'>Alarms: " + "; ".join(html.escape(a) for a in data["alarms"]) + "</p>"
        if data["alarms"]
        else "<p>No alarms.</p>"
    )
    if data["phone_alarms"]:
        parts.append(
            "<p>Answers phones reported (claims, not acted on): "
            + "; ".join(html.escape(a) for a in data["phone_alarms"])
            + "</p>"
        )
    for r in reports:
        live = r.live_accuracy
        live_text = (
            f"{_pct(live[0])} ({_pct(live[1])} to {_pct(live[2])}, {live[3]} answers)" if live else "no feedback yet"
        )
        est = r.estimated_accuracy
        parts += [
            f"<h2>{html.escape(r.kind)}: {html.escape(r.model)} v{html.escape(r.version)}"
            f"{'' if r.source == SERVER else ' (answers phones reported)'}</h2>",
            "<table>",
            f"<tr><th>predictions</th><td>{r.volume:,}</td></tr>",
            f"<tr><th>recognised</th><td>{_pct(r.recognised_rate)} "
            f"(training: {_pct(r.reference_recognised_rate)})</td></tr>",
            f"<tr><th>mean confidence</th><td>{_pct(r.mean_top_prob)}</td></tr>",
            f"<tr><th>estimated accuracy (no labels)</th><td>{_pct(est[0])} "
            f"({_pct(est[1])} to {_pct(est[2])})</td></tr>",
            f"<tr><th>live accuracy (visitors' feedback)</th><td>{live_text}</td></tr>",
            *(
                [
                    f"<tr><th>photo signatures vs training (MMD)</th><td>{r.signature_drift['mmd']:.3f}, "
                    f"p {r.signature_drift['p_value']:.2g} ({r.signature_drift['n']:.0f} photos)</td></tr>"
                ]
                if r.signature_drift
                else []
            ),
            *(
                [
                    "<tr><th>observations (photos of one plant)</th><td>"
                    + ", ".join(
                        f"{n:,} of {k} photo{'s' if k != '1' else ''}" for k, n in sorted(r.observations.items())
                    )
                    + "</td></tr>"
                ]
                if r.observations
                else []
            ),
            "</table>",
        ]
        if r.daily:
            parts.append("<h3>Day by day</h3>" + charts.daily(r.daily, r.live_daily, psi_alarm, r.source))
        drawn = [
            charts.distribution(n, r.distributions[n], f"PSI {f['psi']:.2f}, KS {f['ks']:.2f}, p {f['p_value']:.2g}")
            for n, f in r.features.items()
            if n in r.distributions
        ]
        if "top_probability" in r.distributions:
            drift = r.confidence_drift
            caption = f"KS {drift['ks']:.2f}, p {drift['p_value']:.2g}" if drift else "against training"
            drawn.append(charts.distribution("top_probability", r.distributions["top_probability"], caption))
        if r.band_shares:
            drawn.append(charts.shares("answers per band", r.band_shares, None, "bands"))
        if drawn:
            parts.append("<h3>Distributions: window (green) over training (grey)</h3><div class='charts'>")
            parts += [*drawn, "</div>"]
        if r.features:
            parts.append("<h3>Measurement drift</h3><table><tr><th>feature</th><th>PSI</th><th>KS</th><th>p</th></tr>")
            parts += [
                f"<tr><td>{html.escape(n)}</td><td>{f['psi']:.3f}</td><td>{f['ks']:.3f}</td><td>{f['p_value']:.2g}</td></tr>"
                for n, f in r.features.items()
            ]
            parts.append("</table>")
        profile = profiles.get((r.kind, r.version))
        if profile is not None and r.class_mix:
            parts.append(
                "<h3>Class mix: window (green) and training (grey)</h3>"
                + charts.shares("class mix", r.class_mix, profile.class_priors, "class-mix")
            )
        if r.alarms or r.notes:
            items = [f"<li class='alarm'>{html.escape(a)}</li>" for a in r.alarms]
            items += [f"<li>{html.escape(n)}</li>" for n in r.notes]
            parts.append("<ul>" + "".join(items) + "</ul>")
    parts.append("</body></html>\n")
    atomic_write_text(html_path, "\n".join(parts))
    return json_path, html_path
