"""Monitoring: every prediction is logged off the request path, `bunga monitor` checks a window
against the model's training profile, and drift raises an alarm (exit code 4) while unshifted
traffic rarely does."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from bunga.bundle import read_bundle
from bunga.cli import app
from bunga.config import Settings
from bunga.monitor.checks import Thresholds, check_version
from bunga.monitor.log import PredictionLog, Record
from bunga.monitor.queries import Window
from bunga.monitor.run import run_checks
from bunga.schemas import FEATURES, ReferenceProfile
from bunga.serving.app import create_app
from tests.conftest import ROOT, LiveServer, _free_port
from tests.helpers import missing, photo_bytes

runner = CliRunner()


def _draw(quantiles: list[float], rng: np.random.Generator, n: int) -> np.ndarray:
    """Samples from the distribution a profile's quantiles describe (inverse CDF)."""
    return np.interp(rng.uniform(0, 1, n), np.linspace(0, 1, len(quantiles)), quantiles)


def _log_window(db: Path, profile: ReferenceProfile, rng: np.random.Generator, n: int, shift: dict[str, float]) -> None:
    """``n`` measurement predictions like the training profile, with ``shift`` cm added to features."""
    classes = list(profile.class_priors)
    predicted = rng.choice(classes, n, p=np.asarray(list(profile.class_priors.values())))
    top = _draw(profile.top_prob_quantiles, rng, n)
    x = np.column_stack([_draw(profile.feature_quantiles[f], rng, n) + shift.get(f, 0.0) for f in FEATURES])
    log = PredictionLog(db, n + 10, 90)
    log.start()
    now = time.time()
    for i in range(n):
        log.add(Record(now, "measurements", "m", "1", "champion", predicted[i], top[i], True, None, 1.0, *x[i]))
    log.close()


def _as_jpeg(image: Any) -> np.ndarray:
    """A generated photo saved like the training photos (JPEG, quality 90), preprocessed."""
    from bunga.imaging import photo_tensor

    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return photo_tensor(buffer.getvalue(), 10**8)


def _log_photo_window(db: Path, predictor: Any, images: list[Any]) -> Any:
    """Score ``images`` with the photo model and log every answer (version "1") as serving would;
    returns the scores."""
    scores = predictor.score_photos(np.stack([_as_jpeg(im) for im in images]).astype(np.float32))
    assert scores.signatures is not None
    log = PredictionLog(db, 1000, 90)
    log.start()
    for i, row in enumerate(scores.probabilities):
        known = bool(scores.recognised[i])
        log.add(
            Record(
                time.time(),
                "photos",
                "p",
                "1",
                "champion",
                predictor.classes[int(row.argmax())] if known else "_unrecognised",
                float(row.max()),
                known,
                float(scores.abstain_scores[i]),
                1.0,
                photo_sha256=f"{i:064x}",
                signature=scores.signatures[i].astype(np.float16).tobytes(),
            )
        )
    log.close()
    return scores


def test_drift_alarms_and_false_alarm_rate_on_generated_windows(model_dir: Path, tmp_path: Path) -> None:
    card, _ = read_bundle(model_dir / "measurements")
    profile = card.profile
    assert profile is not None and set(profile.feature_quantiles) == set(FEATURES)
    rng = np.random.default_rng(0)
    thresholds = Thresholds()
    alarms = {"none": 0, "petal_length": 0, "sepal_width": 0}
    for trial in range(20):
        for name, shift in (
            ("none", {}),
            ("petal_length", {"petal_length": 1.0}),
            ("sepal_width", {"sepal_width": 1.0}),
        ):
            db = tmp_path / f"{name}-{trial}.db"
            _log_window(db, profile, rng, 200, shift)
            with sqlite3.connect(db) as conn:
                report = check_version(conn, "measurements", "m", "1", Window(), profile, thresholds)
            assert report.volume == 200
            alarms[name] += bool(report.alarms)
            if name != "none" and report.alarms:
                assert any(a.startswith(name) for a in report.alarms), report.alarms
    assert alarms["none"] <= 1, alarms  # at most 1 false alarm in 20 unshifted windows of 200
    assert alarms["petal_length"] == 20 and alarms["sepal_width"] == 20, alarms


def test_windows_of_genuine_rows_rarely_alarm(model_dir: Path, trained_workspace: Path, tmp_path: Path) -> None:
    """200 windows of 40 rows resampled from the training data, answered by the model: sampling noise
    (an empty PSI bin is 1.5 % likely per bin at 40 rows) raises at most 5 false alarms (2.5 %)."""
    from bunga.predict import Predictor

    profile = read_bundle(model_dir / "measurements")[0].profile
    assert profile is not None
    predictor = Predictor(model_dir / "measurements")
    with (trained_workspace / "Dataset Bunga" / "flowers_dataset.csv").open() as handle:
        rows = np.asarray([[float(r[f]) for f in FEATURES] for r in csv.DictReader(handle)])
    rng = np.random.default_rng(4)
    alarms = 0
    for trial in range(200):
        x = rows[rng.integers(0, len(rows), 40)]
        probabilities = predictor.predict_proba(x)
        db = tmp_path / f"w{trial}.db"
        log = PredictionLog(db, 50, 90)
        log.start()
        for i, row in enumerate(probabilities):
            label = predictor.classes[int(row.argmax())]
            log.add(
                Record(
                    time.time(), "measurements", "m", "1", "champion", label, float(row.max()), True, None, 1.0, *x[i]
                )
            )
        log.close()
        with sqlite3.connect(db) as conn:
            alarms += bool(check_version(conn, "measurements", "m", "1", Window(), profile, Thresholds()).alarms)
    print(f"false alarms on genuine windows of 40: {alarms} of 200")
    assert alarms <= 5, alarms


def test_a_check_reports_its_progress_per_version(model_dir: Path, tmp_path: Path) -> None:
    """`bunga monitor` draws its progress bar from these calls: one per version, then done."""
    profile = read_bundle(model_dir / "measurements")[0].profile
    assert profile is not None
    db = tmp_path / "log.db"
    _log_window(db, profile, np.random.default_rng(2), 40, {})
    seen: list[tuple[int, int, str]] = []
    reports, profiles = run_checks(
        db, tmp_path / "inbox", Window(), Thresholds(), lambda *_: profile, lambda *step: seen.append(step)
    )
    assert [r.volume for r in reports] == [40] and list(profiles) == [("measurements", "1")]
    assert seen == [(0, 1, "measurements v1 (server)"), (1, 1, "done")]


def test_served_predictions_are_logged_and_monitored(model_dir: Path, trained_workspace: Path, tmp_path: Path) -> None:
    """Predictions through the API land in the log (no address, no photo: only its sha256); one
    feedback gives live accuracy; `bunga monitor` writes the report and exits 4 on drift."""
    db = tmp_path / "monitor.db"
    data = tmp_path / "collected_data"
    settings = Settings(model_dir=model_dir, data_dir=data, monitor_db=str(db))  # type: ignore[call-arg]
    with (trained_workspace / "Dataset Bunga" / "flowers_dataset.csv").open() as handle:
        dataset = [{f: float(r[f]) for f in FEATURES} for r in csv.DictReader(handle)]
    rng = np.random.default_rng(1)
    rows = [dataset[i] for i in rng.integers(0, len(dataset), 150)]  # visitors measuring the same flowers
    photo = photo_bytes("sintetis_merah", 3)
    with TestClient(create_app(settings)) as client:
        for start in range(0, len(rows), 50):
            assert client.post("/predict", json=rows[start : start + 50]).status_code == 200
        answer = client.post("/predict/image", files={"file": ("a.jpg", photo, "image/jpeg")}).json()["results"][0]
        said = answer["species"]
        feedback = client.post("/feedback", files={"file": ("a.jpg", photo, "image/jpeg")}, data={"label": said})
        assert feedback.status_code == 201
        for seed in (11, 12, 13):  # three visitors who say the model was wrong
            other = photo_bytes("sintetis_kuning", seed)
            top = client.post("/predict/image", files={"file": ("b.jpg", other, "image/jpeg")}).json()["results"][0]
            classes = [c["species"] for c in top["top"]]
            wrong = next(c for c in sorted(classes) if c != (top["species"] or "_unrecognised"))
            sent = client.post("/feedback", files={"file": ("b.jpg", other, "image/jpeg")}, data={"label": wrong})
            assert sent.status_code == 201
    with sqlite3.connect(db) as conn:
        logged = conn.execute("SELECT kind, COUNT(*) FROM predictions GROUP BY kind ORDER BY kind").fetchall()
        sha = conn.execute("SELECT photo_sha256 FROM predictions WHERE kind = 'photos'").fetchone()[0]
        columns = [c[1] for c in conn.execute("PRAGMA table_info(predictions)")]
    assert logged == [("measurements", 150), ("photos", 4)]
    assert len(sha) == 64 and not any("addr" in c or "client" in c or c == "ip" for c in columns)
    env = {"BUNGA_MONITOR_DB": str(db), "BUNGA_DATA_DIR": str(data)}
    out = tmp_path / "report"
    result = runner.invoke(app, ["monitor", "--model-dir", str(model_dir), "--out", str(out)], env=env)
    assert result.exit_code == 0, result.output  # a fresh window of the training flowers: no alarm
    report = json.loads((out / "monitor-report.json").read_text())
    by_kind = {v["kind"]: v for v in report["versions"]}
    assert by_kind["measurements"]["volume"] == 150 and by_kind["photos"]["volume"] == 4
    # 1 of 4 visitors agreed: 0.25 with its 95 % Wilson interval, computed here independently
    z, n, p = 1.96, 4, 0.25
    centre, half = (p + z * z / (2 * n)), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    expected = [p, (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n), n]
    assert by_kind["photos"]["live_accuracy"] == pytest.approx(expected, abs=1e-6)
    assert 0.04 < expected[1] < 0.05 and 0.69 < expected[2] < 0.70
    assert not [a for a in report["alarms"] if "drifted" in a], report["alarms"]
    assert not [a for a in report["alarms"] if a.startswith("photos")]  # four photos: too few to judge
    assert by_kind["photos"]["notes"]
    html = (out / "monitor-report.html").read_text()
    assert "<script" not in html and "http" not in html.split("</style>")[1] and "<svg" in html
    # a week of petals one centimetre longer: the monitor alarms and exits 4
    shifted = [{**r, "petal_length": r["petal_length"] + 1.0} for r in rows]
    with TestClient(create_app(settings)) as client:
        for start in range(0, len(shifted), 50):
            assert client.post("/predict", json=shifted[start : start + 50]).status_code == 200
    result = runner.invoke(app, ["monitor", "--last", "150", "--model-dir", str(model_dir), "--out", str(out)], env=env)
    assert result.exit_code == 4, result.output
    assert "petal_length drifted" in json.dumps(json.loads((out / "monitor-report.json").read_text())["alarms"])
    from mlflow import MlflowClient

    uri = os.environ["MLFLOW_TRACKING_URI"]
    client = MlflowClient(uri, registry_uri=uri)  # this test's store, whatever an earlier test set
    runs = client.search_runs([client.get_experiment_by_name("bunga-monitoring").experiment_id])
    assert len(runs) == 2 and all(r.data.tags["model_version.measurements"] == "bunga-measurements/1" for r in runs)
    assert {r.data.metrics.get("measurements_v1_alarms") for r in runs} >= {1.0}
    artifacts = {a.path for a in client.list_artifacts(runs[0].info.run_id, "monitoring")}
    assert artifacts == {"monitoring/monitor-report.html", "monitoring/monitor-report.json"}


def test_the_log_writes_every_record_intact_across_batches(tmp_path: Path) -> None:
    """More records than one statement and one transaction hold: every one is written, field for field."""
    records = [
        Record(1e9 + i, "photos", "p", "2", "challenger", None, 0.25, False, 3.5, 7.0, photo_sha256=f"{i:064x}")
        if i % 3 == 0
        else Record(1e9 + i, "measurements", "m", "1", "champion", "setosa", 0.5, True, None, 1.0, i, 2.0, 3.0, 4.0)
        for i in range(2_603)
    ]
    log = PredictionLog(tmp_path / "m.db", 10_000, 10**6)
    log.start()
    for record in records:
        log.add(record)
    log.close()
    with sqlite3.connect(tmp_path / "m.db") as conn:
        rows = conn.execute("SELECT * FROM predictions ORDER BY ts").fetchall()
    assert log.written == len(records) and log.dropped == 0
    assert [tuple(row) for row in rows] == [(*r[:7], int(r.recognised), *r[8:]) for r in records]


def test_a_full_log_queue_drops_and_counts_never_blocks(tmp_path: Path) -> None:
    dropped: list[int] = []
    log = PredictionLog(tmp_path / "m.db", 5, 90, dropped.append)  # not started: nothing drains the queue
    started = time.perf_counter()
    for _ in range(50):
        log.add(Record(time.time(), "measurements", "m", "1", "champion", "setosa", 0.9, True, None, 1.0))
    assert time.perf_counter() - started < 0.5
    assert log.dropped == 45 and sum(dropped) == 45
    log.start()
    log.close()
    with sqlite3.connect(tmp_path / "m.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM predictions").fetchone()[0] == 5


def test_a_real_prometheus_scrapes_bunga_and_evaluates_its_rules(live_server: LiveServer, tmp_path: Path) -> None:
    """Debian's Prometheus scrapes a live `bunga serve` and answers a PromQL query about bunga's
    metrics; the shipped alert rules load and evaluate without error."""
    binary = shutil.which("prometheus")
    if binary is None:
        missing("Debian's prometheus (apt-get install prometheus)")
    port = _free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: [{ROOT / 'deploy' / 'prometheus' / 'alerts.yml'}]\n"
        "scrape_configs:\n"
        f"  - job_name: bunga\n    static_configs: [{{targets: ['127.0.0.1:{live_server.port}']}}]\n"
    )
    log = (tmp_path / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            str(binary),
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(5):
            assert httpx.post(f"{live_server.url}/predict", json=dict.fromkeys(FEATURES, 3.0)).status_code == 200
        deadline = time.monotonic() + 60
        value = 0.0
        while value < 5:
            assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
            assert time.monotonic() < deadline, (tmp_path / "prometheus.log").read_text()[-2000:]
            time.sleep(0.5)
            with contextlib.suppress(httpx.HTTPError):
                query = 'sum(bunga_predictions_total{kind="measurements"})'
                result = httpx.get(f"{url}/api/v1/query", params={"query": query}).json()["data"]["result"]
                value = float(result[0]["value"][1]) if result else 0.0
        deadline = time.monotonic() + 30
        shipped = len(yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())["groups"][0]["rules"])
        while True:  # every rule evaluated at least once, none in error
            groups = httpx.get(f"{url}/api/v1/rules").json()["data"]["groups"]
            rules = [r for g in groups for r in g["rules"]]
            if len(rules) == shipped and all(r.get("lastEvaluation", "").startswith("20") for r in rules):
                break
            assert time.monotonic() < deadline, rules
            time.sleep(0.5)
        assert all(r["health"] == "ok" for r in rules), [(r["name"], r.get("lastError")) for r in rules]
        deadline = time.monotonic() + 30
        while True:  # a live, scraped service: neither down nor absent (once evaluated after a scrape)
            states = {
                r["name"]: r["state"]
                for g in httpx.get(f"{url}/api/v1/rules").json()["data"]["groups"]
                for r in g["rules"]
            }
            if states["BungaDown"] == states["BungaAbsent"] == "inactive":
                break
            assert time.monotonic() < deadline, states
            time.sleep(0.5)
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_dark_or_blurred_photos_raise_a_signature_alarm(model_dir: Path, tmp_path: Path) -> None:
    """Windows of 200 generated photos: fresh photos like the training ones pass the MMD test on the
    signatures the graph exports; the same photos darkened or blurred raise an alarm."""
    import random

    from PIL import ImageEnhance, ImageFilter

    from bunga.data.synthetic import STYLES, draw_flower
    from bunga.predict import Predictor

    predictor = Predictor(model_dir / "photos")
    profile = predictor.card.profile
    assert profile is not None and len(profile.signature_sample) >= 30
    images = [draw_flower(STYLES[n], random.Random(f"fresh-{n}-{i}"), 128) for n in STYLES for i in range(50)]
    variants = {
        "fresh": images,
        "dark": [ImageEnhance.Brightness(im).enhance(0.25) for im in images],
        "blurred": [im.filter(ImageFilter.GaussianBlur(4)) for im in images],
    }
    results = {}
    for name, batch in variants.items():
        db = tmp_path / f"{name}.db"
        scores = _log_photo_window(db, predictor, batch)
        assert scores.signatures.shape == (200, 32)
        with sqlite3.connect(db) as conn:
            report = check_version(conn, "photos", "p", "1", Window(), profile, Thresholds())
        results[name] = report.signature_drift
    assert results["fresh"]["p_value"] >= 0.01, results
    assert results["dark"]["p_value"] < 0.01 and results["blurred"]["p_value"] < 0.01, results
    assert results["dark"]["mmd"] > results["fresh"]["mmd"] and results["blurred"]["mmd"] > results["fresh"]["mmd"]


def test_photos_of_species_the_model_was_not_taught_raise_an_alarm(model_dir: Path, tmp_path: Path) -> None:
    """A window of 200 photos of two species the model never saw (new colours and petal counts): the
    check alarms, while a window of 200 fresh photos of the taught species does not."""
    import random

    from bunga.data.synthetic import STYLES, FlowerStyle, draw_flower
    from bunga.predict import Predictor

    predictor = Predictor(model_dir / "photos")
    profile = predictor.card.profile
    assert profile is not None
    untaught = [FlowerStyle(6, (30, 120, 230), (20, 20, 20), 0.3), FlowerStyle(24, (250, 120, 10), (90, 200, 90), 0.15)]
    windows = {
        "known": [draw_flower(STYLES[n], random.Random(f"k-{n}-{i}"), 128) for n in STYLES for i in range(50)],
        "untaught": [
            draw_flower(style, random.Random(f"u-{k}-{i}"), 128) for k, style in enumerate(untaught) for i in range(100)
        ],
    }
    alarms = {}
    for name, images in windows.items():
        db = tmp_path / f"{name}.db"
        _log_photo_window(db, predictor, images)
        with sqlite3.connect(db) as conn:
            alarms[name] = check_version(conn, "photos", "p", "1", Window(), profile, Thresholds()).alarms
    assert not alarms["known"], alarms
    assert alarms["untaught"], alarms
    assert any("not recognised" in a or "unlike the training photos" in a for a in alarms["untaught"]), alarms


def test_kill_9_loses_at_most_the_last_moment_of_the_log(model_dir: Path, tmp_path: Path) -> None:
    """SIGKILL of a serving process: the predictions the log had flushed before the kill are all still
    in it (at most those queued at the kill are lost), the log is not corrupt, and the service writes
    to it again after a restart."""
    import signal

    db = tmp_path / "monitor.db"
    env = {"BUNGA_DATA_DIR": str(tmp_path / "d"), "BUNGA_MONITOR_DB": str(db)}
    server = LiveServer(env, ["--model-dir", str(model_dir)], tmp_path)
    record = dict.fromkeys(FEATURES, 3.0)
    with httpx.Client(timeout=10) as http:
        for _ in range(300):
            assert http.post(f"{server.url}/predict", json=record).status_code == 200
        deadline = time.monotonic() + 30  # these get flushed (every 0.5 s; slower on a loaded machine)
        while _rows(db) < 300:
            assert time.monotonic() < deadline, f"only {_rows(db)} of 300 rows flushed"
            time.sleep(0.2)
        for _ in range(100):  # these may still be queued at the kill
            assert http.post(f"{server.url}/predict", json=record).status_code == 200
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(timeout=10)
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        kept = conn.execute("SELECT COUNT(*) FROM predictions").fetchone()[0]
    assert 300 <= kept <= 400, kept
    again = LiveServer(env, ["--model-dir", str(model_dir)], tmp_path)
    try:
        assert httpx.post(f"{again.url}/predict", json=record).status_code == 200
    finally:
        again.stop()  # a clean stop writes what is queued
    assert _rows(db) == kept + 1


def _rows(db: Path) -> int:
    """Rows in the prediction log (0 before its table exists)."""
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        try:
            return int(conn.execute("SELECT COUNT(*) FROM predictions").fetchone()[0])
        except sqlite3.OperationalError:
            return 0


OLD_SCHEMA = """CREATE TABLE predictions (
    ts REAL NOT NULL, kind TEXT NOT NULL, model TEXT NOT NULL, version TEXT NOT NULL, arm TEXT NOT NULL,
    predicted TEXT, top_prob REAL NOT NULL, recognised INTEGER NOT NULL, abstain_score REAL,
    latency_ms REAL, f1 REAL, f2 REAL, f3 REAL, f4 REAL, photo_sha256 TEXT, signature BLOB
)"""


def test_a_log_made_before_bands_gains_the_column_and_counts_bands(tmp_path: Path) -> None:
    """A log whose table was made before answers carried their band: the next writer adds the column
    (old rows keep NULL), new rows record their band, and the monitor counts bands per version."""
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:
        conn.execute(OLD_SCHEMA)
        conn.execute("INSERT INTO predictions VALUES (?, 'photos', 'p', '1', 'champion', 'x', 0.9, 1, 0.1, 1.0, "
                     "NULL, NULL, NULL, NULL, NULL, NULL)", (time.time() - 10,))  # fmt: skip
    log = PredictionLog(db, 100, 90)
    log.start()
    for n, band in enumerate(["sure", "sure", "possible", "not_a_flower"]):
        log.add(Record(time.time(), "photos", "p", "1", "champion", "x", 0.9, band != "not_a_flower", 0.1, 1.0,
                       photo_sha256=f"{n:064x}", band=band))  # fmt: skip
    log.close()
    with sqlite3.connect(db) as conn:
        bands = conn.execute("SELECT band FROM predictions ORDER BY ts").fetchall()
        assert [b for (b,) in bands] == [None, "sure", "sure", "possible", "not_a_flower"]
        report = check_version(conn, "photos", "p", "1", Window(), None, Thresholds())
    assert report.band_shares == {"not_a_flower": 0.25, "possible": 0.25, "sure": 0.5}
