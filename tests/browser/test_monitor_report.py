"""The monitoring report in Debian's Chromium (#40): a week of served answers (measurements drifting
from the fourth day, photos in every band) gives a report whose charts are all there, drawn inline,
and which makes no request when opened."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from bunga.bundle import read_bundle
from bunga.cli import app
from bunga.monitor.log import PredictionLog, Record
from bunga.schemas import FEATURES
from tests.browser.test_page import ARTIFACTS, browser, open_page  # noqa: F401 (the fixture)

pytestmark = pytest.mark.browser
DAY = 86_400.0
PER_DAY = 200
BANDS = ("sure", "possible", "not_recognised", "not_a_flower")


def _draw(quantiles: list[float], rng: np.random.Generator, n: int) -> np.ndarray:
    return np.interp(rng.uniform(0, 1, n), np.linspace(0, 1, len(quantiles)), quantiles)


def _week(db: Path, model_dir: Path, rng: np.random.Generator) -> None:
    """Seven days of answers: PER_DAY measurements a day (petals 1 cm longer from day 4) and 20 photos."""
    measurements, _ = read_bundle(model_dir / "measurements")
    photos, _ = read_bundle(model_dir / "photos")
    profile, photo_profile = measurements.profile, photos.profile
    assert profile is not None and photo_profile is not None
    log = PredictionLog(db, 10_000, 90)
    log.start()
    start = time.time() - 7 * DAY
    for day in range(7):
        x = np.column_stack([_draw(profile.feature_quantiles[f], rng, PER_DAY) for f in FEATURES])
        x[:, FEATURES.index("petal_length")] += 1.0 if day >= 3 else 0.0
        for i, row in enumerate(x):
            ts = start + day * DAY + i * 30
            log.add(
                Record(
                    ts,
                    "measurements",
                    measurements.name,
                    str(measurements.version),
                    "champion",
                    "setosa",
                    0.9,
                    True,
                    None,
                    1.0,
                    *row,
                )
            )
        tops = _draw(photo_profile.top_prob_quantiles, rng, 20)
        for i, top in enumerate(tops):
            band = BANDS[(day + i) % 4]
            species = photos.classes[i % len(photos.classes)] if band in ("sure", "possible") else "_unrecognised"
            log.add(
                Record(
                    start + day * DAY + i * 90,
                    "photos",
                    photos.name,
                    str(photos.version),
                    "champion",
                    species,
                    float(top),
                    band in ("sure", "possible"),
                    0.1,
                    12.0,
                    band=band,
                )
            )
    log.close()


def test_the_report_draws_every_chart_and_requests_nothing(
    browser: Any,  # noqa: F811
    model_dir: Path,
    tmp_path: Path,
) -> None:
    db, out = tmp_path / "monitor.db", tmp_path / "report"
    _week(db, model_dir, np.random.default_rng(3))
    env = {"BUNGA_MONITOR_DB": str(db), "BUNGA_DATA_DIR": str(tmp_path / "d")}
    result = CliRunner().invoke(app, ["monitor", "--model-dir", str(model_dir), "--out", str(out)], env=env)
    assert result.exit_code == 4, result.output  # the longer petals alarm
    report = json.loads((out / "monitor-report.json").read_text())
    measured = next(v for v in report["versions"] if v["kind"] == "measurements")
    assert [d["volume"] for d in measured["daily"]] == [PER_DAY] * 7
    drift = [d["psi"]["petal_length"] for d in measured["daily"]]
    assert max(drift[:3]) < 0.25 and min(drift[3:]) > 1.0, drift  # the day the petals changed shows
    page = browser.new_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    url = (out / "monitor-report.html").as_uri()
    page.goto(url)
    charts = set(page.eval_on_selector_all("svg.chart", "nodes => nodes.map(n => n.dataset.chart)"))
    expected = {f"distribution-{f}" for f in FEATURES} | {"distribution-top_probability", "bands", "class-mix", "daily"}
    assert expected <= charts, expected - charts
    assert page.locator("svg.chart[data-chart=daily]").count() == 2  # measurements and photos, day by day
    for chart in page.locator("svg.chart").all():
        box = chart.bounding_box()
        assert box is not None and box["width"] > 100 and box["height"] > 50  # drawn, not empty
    assert page.locator("script").count() == 0
    assert requests == [url], requests  # self-contained: no font, image or script fetched
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "monitor-report.png"), full_page=True)
