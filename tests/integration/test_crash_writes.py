"""kill -9 *inside* a write, for every file writer and the prediction log's transactions.

Each kill is timed by the code's own progress (tests/crash_writers.py stops the first matching write
halfway and signals), and each test checks that it landed mid-write. Each test also runs against a
deliberately non-atomic writer (``torn``): there its soundness check must find the damage, which is
what shows the check can see a torn write at all."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from bunga.schemas import FEATURES
from tests.conftest import ROOT, _free_port, copy_sheets
from tests.helpers import kill_when, photo_bytes

MODES = ["atomic", "torn"]


def launch(
    mode: str, target: str, marker: Path, args: list[str], cwd: Path, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    """``bunga ARGS`` with its writer instrumented (see tests/crash_writers.py)."""
    argv = [sys.executable, "-m", "tests.crash_writers", mode, target, str(marker), "--", *args]
    full_env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
    log = (cwd / f"crash-{marker.name}.log").open("w")
    return subprocess.Popen(argv, cwd=cwd, env=full_env, stdout=log, stderr=subprocess.STDOUT)


def serve(
    mode: str, target: str, marker: Path, model_dir: Path, cwd: Path, env: dict[str, str]
) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    proc = launch(mode, target, marker, ["serve", "--model-dir", str(model_dir), "--port", str(port)], cwd, env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None and time.monotonic() < deadline, "the instrumented server did not start"
        try:
            if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)


def expect(mode: str, problems: list[str]) -> None:
    """Sound after a kill with bunga's writer; damage found with the torn one."""
    if mode == "atomic":
        assert problems == [], problems
    else:
        assert problems, "the check did not see a torn write: it cannot tell a sound crash from a broken one"


def temps(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*.tmp") if p.is_file()]


@pytest.mark.parametrize("mode", MODES)
def test_a_kill_inside_a_feedback_upload_leaves_no_partial_photo(mode: str, model_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "collected_data"
    env = {"BUNGA_DATA_DIR": str(data), "BUNGA_FEEDBACK_RATE_PER_MIN": "0"}
    marker = tmp_path / "upload.paused"
    proc, url = serve(mode, "*.jpg", marker, model_dir, tmp_path, env)
    photo = photo_bytes("sintetis_merah", 41, size=400)

    def upload() -> None:
        with contextlib.suppress(httpx.HTTPError):  # the server is killed mid-request
            httpx.post(f"{url}/feedback", files={"file": ("a.jpg", photo, "image/jpeg")}, timeout=60)

    threading.Thread(target=upload, daemon=True).start()
    kill_when(proc, marker.exists)
    photos = data / "feedback" / "photos"
    partial = temps(photos) if mode == "atomic" else list(photos.glob("*.jpg"))
    assert partial and all(0 < p.stat().st_size < len(photo) for p in partial), "the kill did not land mid-write"
    problems = [
        f"{p.name}: its bytes do not hash to its name"
        for p in photos.glob("*.jpg")
        if hashlib.sha256(p.read_bytes()).hexdigest() != p.stem
    ]
    expect(mode, problems)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("target", ["flowers_dataset.csv", "*.jpg"])
def test_a_kill_inside_a_merge_write_leaves_only_whole_files(
    mode: str, target: str, tmp_path: Path, synthetic_photos: Path
) -> None:
    """Killed while the dataset sheet is written, or while photos are copied into the dataset."""
    data = copy_sheets(tmp_path / "collected_data")
    shutil.copytree(synthetic_photos, data / "staf")
    sources = {hashlib.sha256(p.read_bytes()).hexdigest() for p in (data / "staf").rglob("*.jpg")}
    dataset = tmp_path / "Dataset Bunga"
    marker = tmp_path / "merge.paused"
    proc = launch(mode, target, marker, ["merge"], tmp_path, {"BUNGA_DATA_DIR": str(data)})
    kill_when(proc, marker.exists)
    if mode == "atomic":
        assert temps(dataset), "the kill did not land mid-write"
    problems = []
    for path in dataset.rglob("*"):
        if not path.is_file() or path.name.startswith("."):
            continue
        if path.suffix == ".jpg" and hashlib.sha256(path.read_bytes()).hexdigest() not in sources:
            problems.append(f"{path.name}: not a whole copy of any collected photo")
        elif path.suffix == ".csv" and not path.read_text().endswith("\n"):
            problems.append(f"{path.name}: cut off")
    expect(mode, problems)
    if mode == "atomic":  # and the next merge converges on what an uninterrupted one makes
        from typer.testing import CliRunner

        from bunga.cli import app

        env = {"BUNGA_DATA_DIR": str(data)}
        assert CliRunner().invoke(app, ["merge"], env=env).exit_code == 0
        clean = tmp_path / "clean"
        again = CliRunner().invoke(app, ["merge", "--dataset-dir", str(clean)], env=env)
        assert again.exit_code == 0
        assert (dataset / "manifest.json").read_text() == (clean / "manifest.json").read_text()
        assert not temps(dataset)


@pytest.mark.parametrize("mode", MODES)
def test_a_kill_inside_a_log_batch_leaves_whole_batches(mode: str, model_dir: Path, tmp_path: Path) -> None:
    """The prediction log (SQLite): killed after the first INSERT of a 256-row batch, before its
    commit. Every batch is in the log whole or not at all."""
    db = tmp_path / "monitor.db"
    marker = tmp_path / "log.paused"
    env = {"BUNGA_DATA_DIR": str(tmp_path / "d"), "BUNGA_MONITOR_DB": str(db)}
    proc, url = serve(mode, "log", marker, model_dir, tmp_path, env)
    record = dict.fromkeys(FEATURES, 3.0)
    with httpx.Client(base_url=url, timeout=10) as http:
        for _ in range(5):  # batches of one, committed before the big one
            assert http.post("/predict", json=record).status_code == 200
        time.sleep(1.0)
        assert http.post("/predict", json=[record] * 256).status_code == 200
    kill_when(proc, marker.exists)
    committed_file = marker.with_name(marker.name + ".committed")
    committed = [int(n) for n in committed_file.read_text().split()] if committed_file.exists() else []
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = conn.execute("SELECT COUNT(*) FROM predictions").fetchone()[0]
    assert sum(committed) >= 1, "the small batches were not committed before the kill"
    problems = [] if rows == sum(committed) else [f"{rows} rows in the log, {sum(committed)} in whole batches"]
    expect(mode, problems)


def test_the_instrumented_writer_changes_nothing_when_it_does_not_match(tmp_path: Path) -> None:
    """The launcher itself: a merge whose writes never match runs to the end and equals a plain one."""
    data = copy_sheets(tmp_path / "collected_data")
    marker = tmp_path / "never"
    proc = launch("torn", "no-such-file", marker, ["merge"], tmp_path, {"BUNGA_DATA_DIR": str(data)})
    assert proc.wait(timeout=120) == 0 and not marker.exists()
    assert (tmp_path / "Dataset Bunga" / "flowers_dataset.csv").read_text().endswith("\n")


@pytest.mark.image
@pytest.mark.parametrize("mode", MODES)
def test_a_kill_inside_an_embedding_write_leaves_every_visible_entry_whole(
    mode: str, tmp_path: Path, synthetic_photos: Path
) -> None:
    """The embedding cache, killed halfway through writing an entry: every visible entry verifies."""
    from typer.testing import CliRunner

    from bunga.cli import app
    from bunga.models.image import EmbeddingCache

    shutil.copytree(synthetic_photos, tmp_path / "collected_data" / "staf")
    assert CliRunner().invoke(app, ["merge"]).exit_code == 0
    marker = tmp_path / "embedding.paused"
    proc = launch(mode, "*.bin", marker, ["train", "--kind", "photos"], tmp_path, {"BUNGA_IMAGE_BATCH_SIZE": "2"})
    kill_when(proc, marker.exists)
    embeddings = tmp_path / ".bunga-cache" / "embeddings"
    entries = [p for p in embeddings.rglob("*.bin") if not p.name.startswith(".")]
    if mode == "atomic":
        assert temps(embeddings), "the kill did not land mid-write"
    else:
        assert entries, "the kill did not land mid-write"
    backbone = next(p for p in embeddings.iterdir() if p.is_dir()).name
    cache = EmbeddingCache(tmp_path / ".bunga-cache", backbone)
    expect(mode, [f"{p.name}: does not verify" for p in entries if cache.get(p.stem) is None])


@pytest.mark.parametrize("mode", MODES)
def test_a_kill_inside_a_curators_decision_leaves_it_whole_or_absent(
    mode: str, model_dir: Path, tmp_path: Path
) -> None:
    """Killed halfway through writing a review decision: every visible decision record parses, and
    the photo it was about is decided or still waiting, never in between."""
    import hashlib
    import json

    from bunga.garden import decisions

    token = "a-curators-token-0000000003"
    data = tmp_path / "collected_data"
    env = {
        "BUNGA_DATA_DIR": str(data),
        "BUNGA_CURATORS": json.dumps({"ani": hashlib.sha256(token.encode()).hexdigest()}),
        "BUNGA_FEEDBACK_RATE_PER_MIN": "0",
    }
    marker = tmp_path / "decision.paused"
    proc, url = serve(mode, "*-ani.json", marker, model_dir, tmp_path, env)
    photo = photo_bytes("sintetis_merah", 61)
    sha = httpx.post(f"{url}/feedback", files={"file": ("a.jpg", photo, "image/jpeg")}, data={"label": ""}).json()["id"]

    def decide() -> None:
        with contextlib.suppress(httpx.HTTPError):
            body = {"sha256": sha, "decision": "label", "label": "sintetis_merah"}
            httpx.post(f"{url}/review/decisions", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=60)

    threading.Thread(target=decide, daemon=True).start()
    kill_when(proc, marker.exists)
    folder = data / "feedback" / "decisions"
    if mode == "atomic":
        assert temps(folder), "the kill did not land mid-write"
    visible = [p for p in folder.glob("*.json")]
    expect(mode, [f"{p.name}: not a whole decision" for p in visible if decisions.read(p) is None])
