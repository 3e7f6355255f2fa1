"""The monitoring report's charts, drawn with matplotlib as inline SVG (text kept as text, no scripts,
no external references): each feature's distribution in the window over the reference's, the top
probability against training, band shares, and the window day by day."""

from __future__ import annotations

import html
import io
import itertools
import math
import re
from typing import Any

WINDOW, REFERENCE, ALARM = "#1b5e20", "#9e9e9e", "#b71c1c"
BAND_COLOURS = {"sure": "#1b5e20", "possible": "#f9a825", "not_recognised": "#6d4c41", "not_a_flower": "#9e9e9e"}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.fonttype": "none", "font.size": 9, "axes.spines.top": False, "axes.spines.right": False})
    return plt


def _svg(figure: Any, label: str, name: str) -> str:
    """The figure as an inline <svg> element labelled for screen readers and tests."""
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    _pyplot().close(figure)
    text = buffer.getvalue()
    text = text[text.index("<svg") :]
    text = re.sub(r"<!--.*?-->|<metadata>.*?</metadata>", "", text, flags=re.S)
    text = re.sub(r'\s+xmlns(:xlink)?="[^"]*"', "", text)  # inline in HTML: no namespace URLs needed
    attributes = f'<svg role="img" class="chart" data-chart="{html.escape(name)}" aria-label="{html.escape(label)}" '
    return text.replace("<svg ", attributes, 1)


def distribution(name: str, dist: dict[str, list[float]], caption: str) -> str:
    """A feature's (or the top probability's) share per bin in the window over the reference's, as
    densities on the feature's own axis."""
    plt = _pyplot()
    edges, window, reference = dist["edges"], dist["window"], dist["reference"]
    widths = [max(b - a, 1e-9) for a, b in itertools.pairwise(edges)]
    figure, axes = plt.subplots(figsize=(4.2, 2.0))
    axes.stairs(
        [r / w for r, w in zip(reference, widths, strict=True)],
        edges,
        fill=True,
        color=REFERENCE,
        alpha=0.5,
        label="training",
    )
    axes.stairs(
        [s / w for s, w in zip(window, widths, strict=True)], edges, color=WINDOW, linewidth=1.6, label="window"
    )
    axes.set_yticks([])
    axes.set_title(f"{name}: {caption}", loc="left")
    axes.legend(frameon=False, fontsize=8)
    return _svg(figure, f"{name} in the window against training", f"distribution-{name}")


def shares(title: str, window: dict[str, float], reference: dict[str, float] | None, name: str) -> str:
    """Shares per category (class mix, bands): the window's bars, the reference's beside them."""
    plt = _pyplot()
    categories = sorted(set(window) | set(reference or {}))
    figure, axes = plt.subplots(figsize=(4.2, 0.35 * len(categories) + 0.7))
    y = list(range(len(categories)))
    height = 0.38 if reference is not None else 0.7
    colours = [BAND_COLOURS.get(c, WINDOW) for c in categories]
    axes.barh(
        [v + (height / 2 if reference is not None else 0) for v in y],
        [window.get(c, 0.0) for c in categories],
        height=height,
        color=colours,
        label="window",
    )
    if reference is not None:
        axes.barh(
            [v - height / 2 for v in y],
            [reference.get(c, 0.0) for c in categories],
            height=height,
            color=REFERENCE,
            label="training",
        )
        axes.legend(frameon=False, fontsize=8)
    axes.set_yticks(y, categories)
    axes.invert_yaxis()
    axes.set_xlim(0, 1)
    axes.set_title(title, loc="left")
    return _svg(figure, title, name)


def daily(days: list[dict[str, Any]], live: list[dict[str, Any]], psi_alarm: float, source: str) -> str:
    """The window day by day: volume; band shares (photos) or the recognised share; live accuracy with
    its 95 % interval; PSI per feature against the alarm line."""
    plt = _pyplot()
    with_bands = any(d["bands"] for d in days)
    features = sorted({f for d in days for f in d["psi"]})
    panels = 2 + bool(live) + bool(features)
    figure, axes = plt.subplots(panels, 1, figsize=(6.0, 1.5 * panels), sharex=False, squeeze=False)
    labels = [d["day"][5:] for d in days]
    x = list(range(len(days)))
    axes[0][0].bar(x, [d["volume"] for d in days], color=WINDOW)
    axes[0][0].set_title(f"answers per day ({source})", loc="left")
    axes[0][0].set_xticks(x, labels)
    panel = axes[1][0]
    if with_bands:
        bottom = [0.0] * len(days)
        for band, colour in BAND_COLOURS.items():
            values = [d["bands"].get(band, 0.0) for d in days]
            panel.bar(x, values, bottom=bottom, color=colour, label=band)
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        panel.legend(frameon=False, fontsize=7, ncol=4, loc="lower left")
        panel.set_title("band shares per day", loc="left")
    else:
        panel.plot(x, [d["recognised"] for d in days], marker="o", color=WINDOW)
        panel.set_title("recognised share per day", loc="left")
    panel.set_ylim(0, 1)
    panel.set_xticks(x, labels)
    row = 2
    if live:
        panel = axes[row][0]
        lx = list(range(len(live)))
        centre = [d["share"] for d in live]
        errors = [
            [c - d["low"] for c, d in zip(centre, live, strict=True)],
            [d["high"] - c for c, d in zip(centre, live, strict=True)],
        ]
        panel.errorbar(lx, centre, yerr=errors, fmt="o", color=WINDOW, capsize=3)
        panel.set_xticks(lx, [d["day"][5:] for d in live])
        panel.set_ylim(0, 1.05)
        panel.set_title("live accuracy per day (visitors' labels, 95 % interval)", loc="left")
        row += 1
    if features:
        panel = axes[row][0]
        for feature in features:
            values = [d["psi"].get(feature, math.nan) for d in days]
            panel.plot(x, values, marker="o", label=feature)
        panel.axhline(psi_alarm, color=ALARM, linestyle="--", linewidth=1, label="alarm")
        panel.set_xticks(x, labels)
        panel.legend(frameon=False, fontsize=7, ncol=3)
        panel.set_title("drift per feature per day (PSI)", loc="left")
    figure.tight_layout()
    return _svg(figure, f"the window day by day ({source})", "daily")
