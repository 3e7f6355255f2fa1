"""Answers phones report (``POST /predictions/phone``) are claims, not facts: they must name a version
this deployment served, are rate-limited per record, never push a server answer out of the log's
queue, never replace the server's answer in live accuracy, and are reported apart by `bunga monitor`
(their alarms never set its exit code nor make `pipeline --if-needed` retrain)."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from typer.testing import CliRunner

from bunga.bundle import read_bundle
from bunga.cli import app
from bunga.monitor.checks import Thresholds
from bunga.monitor.live import live_accuracy
from bunga.monitor.log import PHONE_ARM, PredictionLog, Record
from bunga.monitor.queries import SERVER, Window
from bunga.monitor.run import run_checks
from bunga.schemas import FEATURES, ReferenceProfile
from bunga.training.promotion import report_alarms
from tests.conftest import LiveServer
from tests.integration.test_monitor import _draw

runner = CliRunner()


def _answer(version: str, n: int = 0, at: float | None = None) -> dict[str, Any]:
    return {
        "photo_sha256": f"{n:064x}",
        "model_version": version,
        "predicted": "sintetis_merah",
        "band": "possible",
        "top_probability": 0.7,
        "at": at if at is not None else round(time.time() - 30, 3),
    }


def _measurement_rows(
    profile: ReferenceProfile, rng: np.random.Generator, n: int, arm: str, shift: float = 0.0
) -> list[Record]:
    """``n`` measurement answers like the training profile (petal length + ``shift`` cm)."""
    classes = list(profile.class_priors)
    predicted = rng.choice(classes, n, p=np.asarray(list(profile.class_priors.values())))
    top = _draw(profile.top_prob_quantiles, rng, n)
    x = np.column_stack(
        [_draw(profile.feature_quantiles[f], rng, n) + (shift if f == "petal_length" else 0.0) for f in FEATURES]
    )
    now = time.time()
    return [
        Record(now - i * 0.01, "measurements", "m", "1", arm, predicted[i], top[i], True, None, 1.0, *x[i])
        for i in range(n)
    ]


def _write(db: Path, records: list[Record]) -> None:
    log = PredictionLog(db, len(records) + 10, 90)
    log.start()
    for record in records:
        log.add(record)
    log.close()


def test_phone_answers_must_name_a_served_version_and_are_limited_per_record(model_dir: Path, tmp_path: Path) -> None:
    """(a, e) a made-up version is refused with the batch, so it never reaches the log or the monitor;
    (d) the rate limit counts records, not batches, and the band counter says which arm answered."""
    env = {"BUNGA_DATA_DIR": str(tmp_path / "d"), "BUNGA_PHONE_RATE_PER_MIN": "1", "BUNGA_PHONE_BURST": "512"}
    server = LiveServer(env, ["--model-dir", str(model_dir)], tmp_path)
    url = f"{server.url}/predictions/phone"
    try:
        served = httpx.get(f"{server.url}/model").json()["models"]["photos"]["version"]
        refused = httpx.post(url, json={"records": [_answer("not-a-version")]})
        assert refused.status_code == 422 and "'not-a-version' is no photos model this server served" in refused.text
        made_up = {"records": [_answer(f"v{n}", n) for n in range(256)]}  # 256 distinct made-up versions
        assert httpx.post(url, json=made_up).status_code == 422
        ahead = httpx.post(url, json={"records": [_answer(served, at=time.time() + 400)]})  # past the 300 s skew
        assert ahead.status_code == 422 and "at most 300 s ahead" in ahead.text
        batch = {"records": [_answer(served, n) for n in range(250)]}
        assert httpx.post(url, json=batch).json() == {"logged": 250}  # 508 records of a budget of 512 spent
        more = httpx.post(url, json={"records": [_answer(served, 1000 + n) for n in range(10)]})
        assert more.status_code == 429 and "phone answers" in more.text and int(more.headers["retry-after"]) >= 1
        metrics = httpx.get(f"{server.url}/metrics").text
        assert 'bunga_photo_answers_total{arm="phone",band="possible"} 250.0' in metrics
    finally:
        server.stop()
    with sqlite3.connect(tmp_path / "bunga-monitor.db") as db:
        versions = db.execute("SELECT DISTINCT version, arm FROM predictions").fetchall()
    assert versions == [(served, PHONE_ARM)]


def test_a_flood_of_phone_rows_never_drops_a_server_row(tmp_path: Path) -> None:
    """(d) the log's queue is full of phone rows: the next server answers are still kept."""
    dropped: list[int] = []
    log = PredictionLog(tmp_path / "m.db", 100, 90, dropped.append)  # not started: nothing drains
    now = time.time()  # within the log's retention: the writer prunes older rows
    for i in range(300):
        log.add(Record(now - i, "photos", "p", "1", PHONE_ARM, "x", 0.5, True, 0.1, 0.0, photo_sha256=f"{i:064x}"))
    for i in range(50):
        log.add(Record(now - i, "measurements", "m", "1", "champion", "setosa", 0.9, True, None, 1.0))
    assert log.dropped == 200 and sum(dropped) == 200  # phone rows only
    log.start()
    log.close()
    with sqlite3.connect(tmp_path / "m.db") as conn:
        kept = dict(conn.execute("SELECT arm, COUNT(*) FROM predictions GROUP BY arm").fetchall())
    assert kept == {"champion": 50, PHONE_ARM: 100}


def test_phone_rows_are_reported_apart_and_never_hide_or_raise_an_alarm(model_dir: Path, tmp_path: Path) -> None:
    """(b) 2,560 phone answers like the training data beside 300 server answers with petals 2.5 cm
    longer: the server's drift still alarms (exit 4); phone rows drifting alone alarm in their own
    list, exit 0, and give `pipeline --if-needed` no reason to retrain."""
    profile = read_bundle(model_dir / "measurements")[0].profile
    assert profile is not None
    rng = np.random.default_rng(5)
    db = tmp_path / "log.db"
    _write(db, _measurement_rows(profile, rng, 300, "champion", 2.5) + _measurement_rows(profile, rng, 2560, PHONE_ARM))
    reports, _ = run_checks(db, tmp_path / "inbox", Window(), Thresholds(), lambda *_: profile)
    by_source = {r.source: r for r in reports}
    assert by_source[SERVER].volume == 300 and by_source["phone"].volume == 2560
    assert any(a.startswith("petal_length drifted") for a in by_source[SERVER].alarms), by_source[SERVER].alarms

    quiet = tmp_path / "quiet.db"  # the server's answers as at training; the phones' drifted
    _write(
        quiet, _measurement_rows(profile, rng, 300, "champion") + _measurement_rows(profile, rng, 300, PHONE_ARM, 2.5)
    )
    env = {"BUNGA_MONITOR_DB": str(quiet), "BUNGA_DATA_DIR": str(tmp_path / "d")}
    out = tmp_path / "report"
    result = runner.invoke(app, ["monitor", "--model-dir", str(model_dir), "--out", str(out), "--no-mlflow"], env=env)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "monitor-report.json").read_text())
    assert report["alarms"] == [] and any("petal_length drifted" in a for a in report["phone_alarms"])
    assert "phone answers" in result.output
    assert report_alarms(out / "monitor-report.json") == []  # what `pipeline --if-needed` reads
    assert "answers phones reported" in (out / "monitor-report.html").read_text()


def test_live_accuracy_scores_the_servers_answer_never_a_phones(tmp_path: Path) -> None:
    """(c) a phone's later answer for the same photo does not replace what the server answered."""
    db = tmp_path / "log.db"
    sha = "d" * 64
    _write(
        db,
        [
            Record(time.time() - 60, "photos", "p", "1", "champion", "rose", 0.9, True, 0.1, 5.0, photo_sha256=sha),
            Record(time.time() - 30, "photos", "p", "1", PHONE_ARM, "tulip", 0.9, True, 0.1, 0.0, photo_sha256=sha),
        ],
    )
    inbox = tmp_path / "inbox"
    (inbox / "photos").mkdir(parents=True)
    (inbox / "photos" / "a.json").write_text(json.dumps({"sha256": sha, "label": "rose", "model_version": "1"}))
    with sqlite3.connect(db) as conn:
        scored = live_accuracy(conn, inbox, "photos", "1")
    assert scored is not None and scored[0] == 1.0 and scored[3] == 1, scored


def test_a_version_string_from_the_log_never_breaks_the_mlflow_run(model_dir: Path, tmp_path: Path) -> None:
    """(f) a version with characters MLflow refuses in a metric name: `bunga monitor` logs its run and
    exits by its alarms (0 or 4), never 1."""
    profile = read_bundle(model_dir / "measurements")[0].profile
    assert profile is not None
    db = tmp_path / "log.db"
    rows = _measurement_rows(profile, np.random.default_rng(9), 40, "champion")
    _write(db, [r._replace(version="v#1 <x>?") for r in rows])
    env = {"BUNGA_MONITOR_DB": str(db), "BUNGA_DATA_DIR": str(tmp_path / "d")}
    result = runner.invoke(app, ["monitor", "--model-dir", str(model_dir), "--out", str(tmp_path / "r")], env=env)
    assert result.exit_code in (0, 4), result.output
    assert "logged to MLflow" in result.output


def test_a_phone_reports_several_photos_of_one_plant_as_one_observation(model_dir: Path, tmp_path: Path) -> None:
    env = {"BUNGA_DATA_DIR": str(tmp_path / "d"), "BUNGA_MONITOR_DB": str(tmp_path / "log.db")}
    server = LiveServer(env, ["--model-dir", str(model_dir)], tmp_path)
    url = f"{server.url}/predictions/phone"
    try:
        served = httpx.get(f"{server.url}/model").json()["models"]["photos"]["version"]
        plant = [f"{n:064x}" for n in (7, 8, 9)]
        answer = {**_answer(served, 7), "photos": plant}
        assert httpx.post(url, json={"records": [answer]}).status_code == 202
        wrong_first = {**_answer(served, 7), "photos": plant[::-1]}
        refused = httpx.post(url, json={"records": [wrong_first]})
        assert refused.status_code == 422 and "photo_sha256 first" in refused.text
        too_many = {**_answer(served, 7), "photos": [f"{n:064x}" for n in range(7, 13)]}
        assert httpx.post(url, json={"records": [too_many]}).status_code == 422
    finally:
        server.stop()
    with sqlite3.connect(tmp_path / "log.db") as db:
        rows = db.execute("SELECT arm, observation_id, observation_photos FROM predictions").fetchall()
    assert len(rows) == 1 and rows[0][0] == PHONE_ARM and rows[0][2] == 3  # one record for the plant
    assert rows[0][1].startswith("phone_")  # no server issued it: an id of the phone's photos, a claim
