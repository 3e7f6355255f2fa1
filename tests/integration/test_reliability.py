"""No lost data under concurrency or crashes, safe model swaps under load, and a serving path that
never unpickles or imports training code. Real `bunga serve` processes over HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from bunga.cli import app
from tests.conftest import LiveServer
from tests.helpers import onnx_scores_graph, photo_bytes

AUTH = {"Authorization": "Bearer test-admin-token-123456"}
IRIS = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


def noise_pngs(count: int, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(buffer, "PNG")
        out.append(buffer.getvalue())
    return out


async def upload_all(url: str, photos: list[bytes], clients: int) -> list[int | str]:
    gate = asyncio.Semaphore(clients)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=httpx.Limits(max_connections=clients)) as http:

        async def one(i: int, data: bytes) -> int | str:
            async with gate:
                try:
                    response = await http.post(
                        "/feedback",
                        files={"file": (f"{i}.png", data, "image/png")},
                        data={"label": "sintetis_merah" if i % 2 else ""},
                    )
                except httpx.HTTPError as err:  # named in the failure: a timeout is not a reset
                    return type(err).__name__
                return response.status_code

        return list(await asyncio.gather(*(one(i, d) for i, d in enumerate(photos))))


def check_inbox(inbox: Path) -> tuple[int, int]:
    """Every visible file is whole: photos decode and hash to their name, records parse.

    An interrupted atomic write may leave a hidden ``.<name>.<random>.tmp`` file, which the merge skips.
    """
    photos = list(inbox.glob("*.png"))
    records = list(inbox.glob("*.json"))
    for photo in photos:
        data = photo.read_bytes()
        assert hashlib.sha256(data).hexdigest() == photo.stem
        Image.open(io.BytesIO(data)).load()
    for record in records:
        assert json.loads(record.read_text())["sha256"]
    visible = [p for p in inbox.iterdir() if not p.name.startswith(".")]
    assert not [p for p in visible if p.suffix not in {".png", ".json"}]  # no visible temp file
    assert all(p.suffix == ".tmp" for p in inbox.iterdir() if p.name.startswith("."))
    return len(photos), len(records)


@pytest.mark.slow
def test_500_concurrent_feedback_uploads_are_all_kept(live_server: LiveServer, tmp_path: Path) -> None:
    photos = noise_pngs(500, seed=1)
    statuses = asyncio.run(upload_all(live_server.url, photos, clients=50))
    assert statuses.count(201) == 500, {s: statuses.count(s) for s in set(statuses)}
    inbox = tmp_path / "collected_data" / "feedback" / "photos"
    assert check_inbox(inbox) == (500, 500)
    result = CliRunner().invoke(
        app,
        ["merge"],
        env={
            "BUNGA_DATA_DIR": str(tmp_path / "collected_data"),
            "BUNGA_IMAGE_MIN_SIDE": "16",
            "BUNGA_FEEDBACK_MIN_VOTES": "1",  # each labelled upload is its own photo: one vote each
        },
    )
    assert result.exit_code == 0, result.output
    assert "photos: 500 read = 250 kept + 0 rejected + 0 duplicate + 250 queued" in result.output


@pytest.mark.slow
def test_a_killed_server_leaves_no_partial_file(live_server: LiveServer, model_dir: Path, tmp_path: Path) -> None:
    photos = noise_pngs(300, seed=2)

    inbox = tmp_path / "collected_data" / "feedback" / "photos"

    def kill_midway() -> None:  # timed by progress: once 60 uploads are stored (a kill inside one
        # write is tests/integration/test_crash_writes.py's job)
        deadline = time.monotonic() + 60
        while len(list(inbox.glob("*.json"))) < 60 and time.monotonic() < deadline:
            time.sleep(0.005)
        live_server.proc.send_signal(signal.SIGKILL)

    threading.Thread(target=kill_midway).start()
    statuses = asyncio.run(upload_all(live_server.url, photos, clients=20))
    accepted = statuses.count(201)
    assert 0 < accepted < 300, accepted  # killed midway (stored uploads may not have been answered yet)
    n_photos, n_records = check_inbox(inbox)
    assert n_records >= accepted and n_photos >= accepted  # every acknowledged upload is on disk

    # The merge sees only whole files; a restarted server sweeps temp files older than an hour only,
    # since another replica sharing the inbox may be writing one right now.
    result = CliRunner().invoke(
        app, ["merge"], env={"BUNGA_DATA_DIR": str(tmp_path / "collected_data"), "BUNGA_IMAGE_MIN_SIDE": "16"}
    )
    assert result.exit_code == 0, result.output
    assert f"photos: {n_photos} read" in result.output
    stale, fresh = inbox / ".left-by-a-crash.png.x1.tmp", inbox / ".being-written.png.x2.tmp"
    for temp in (stale, fresh):
        temp.write_bytes(b"partial")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    env = {"BUNGA_DATA_DIR": str(tmp_path / "collected_data")}
    restarted = LiveServer(env, ["--model-dir", str(model_dir)], tmp_path)
    restarted.stop()
    assert not stale.exists() and fresh.exists()


@pytest.mark.slow
def test_swaps_under_load_never_fail_a_request(model_dir: Path, tmp_path: Path) -> None:
    server = LiveServer(
        # no polling: only the POST /admin/reload below swaps, so its answer is the swap's
        {
            "BUNGA_DATA_DIR": str(tmp_path / "d"),
            "BUNGA_ADMIN_TOKEN": AUTH["Authorization"][7:],
            "BUNGA_RELOAD_INTERVAL_S": "0",
        },
        ["--model-dir", str(model_dir)],
        tmp_path,
    )
    first = {k: json.loads((model_dir / k / "bunga.json").read_text())["version"] for k in ("measurements", "photos")}

    def stage(kind: str, version: str, broken: bool) -> Path:
        folder = tmp_path / f"{kind}-{version}"
        shutil.copytree(model_dir / kind, folder)
        card = json.loads((folder / "bunga.json").read_text())
        card["version"] = version
        if broken:  # with a matching sha256: refused by onnxruntime's load or by the smoke check
            graph = onnx_scores_graph(4, len(card["classes"])) if kind == "measurements" else b"\x08\x07garbage"
            (folder / "model.onnx").write_bytes(graph)
            card["onnx_sha256"] = hashlib.sha256(graph).hexdigest()
        (folder / "bunga.json").write_text(json.dumps(card))
        return folder

    def move_champion(kind: str, folder: Path) -> None:
        old = tmp_path / f"old-{kind}-{time.monotonic_ns()}"
        (model_dir / kind).rename(old)
        folder.rename(model_dir / kind)

    seen: list[tuple[int, str, int, str]] = []
    failures: list[tuple[int, str]] = []
    ran_until_stop: set[int] = set()
    stop = threading.Event()
    photo = photo_bytes("sintetis_ungu", 11)

    def load(worker: int, kind: str) -> None:
        """Every exception counts as a failed request; the loop runs until the stop."""
        with httpx.Client(base_url=server.url, timeout=30) as http:
            while not stop.is_set():
                try:
                    if kind == "measurements":
                        r = http.post("/predict", json=IRIS)
                        version = r.json()["predictions"][0]["model_version"] if r.status_code == 200 else ""
                    else:
                        r = http.post("/predict/image", files={"file": ("a.jpg", photo, "image/jpeg")})
                        version = r.json()["results"][0]["model_version"] if r.status_code == 200 else ""
                except Exception as err:
                    failures.append((worker, repr(err)))
                    continue
                seen.append((worker, kind, r.status_code, version))
        ran_until_stop.add(worker)

    kinds = ("measurements", "photos", "measurements")
    workers = [threading.Thread(target=load, args=(i, k)) for i, k in enumerate(kinds)]
    try:
        for w in workers:
            w.start()
        time.sleep(1.5)
        for kind in ("measurements", "photos"):
            move_champion(kind, stage(kind, "good-2", broken=False))
        good = httpx.post(f"{server.url}/admin/reload", headers=AUTH, timeout=60).json()["results"]
        assert {r["status"] for r in good} == {"swapped"}
        time.sleep(1.5)
        for kind in ("measurements", "photos"):
            move_champion(kind, stage(kind, "broken-3", broken=True))
        bad = httpx.post(f"{server.url}/admin/reload", headers=AUTH, timeout=60).json()["results"]
        assert {r["status"] for r in bad} == {"failed"}
        errors = {r["kind"]: r["error"] for r in bad}
        assert "not probabilities" in errors["measurements"], errors
        assert "cannot be loaded by onnxruntime" in errors["photos"], errors
        time.sleep(1.5)
    finally:
        stop.set()
        for w in workers:
            w.join()
        server.stop()
    assert failures == []
    assert ran_until_stop == set(range(len(kinds)))
    statuses = {s for _, _, s, _ in seen}
    assert statuses == {200}, statuses
    for worker, kind in enumerate(kinds):
        versions = [v for w, _, _, v in seen if w == worker]  # one client's requests, in order
        assert set(versions) == {first[kind], "good-2"}, set(versions)  # the broken one never served
        switch = versions.index("good-2")
        assert set(versions[switch:]) == {"good-2"}  # once swapped, never back
    assert len(seen) > 50


def test_serving_never_unpickles_nor_imports_training_code(model_dir: Path, tmp_path: Path) -> None:
    script = f"""
import pickle, sys
def refuse(*args, **kwargs):
    raise AssertionError("unpickling in the serving path")
pickle.load = pickle.loads = pickle.Unpickler = refuse
from fastapi.testclient import TestClient
from bunga.config import Settings
from bunga.serving.app import create_app
import io
from PIL import Image
def photo_bytes():
    buffer = io.BytesIO()
    Image.new("RGB", (96, 96), (200, 30, 40)).save(buffer, "JPEG")
    return buffer.getvalue()
settings = Settings(model_dir={str(model_dir)!r}, data_dir={str(tmp_path / "d")!r})
with TestClient(create_app(settings)) as client:
    assert client.post("/predict", json={IRIS!r}).status_code == 200
    assert client.post("/predict/image", files={{"file": ("a.jpg", photo_bytes(), "image/jpeg")}}).status_code == 200
    sent = client.post("/feedback", files={{"file": ("a.jpg", photo_bytes(), "image/jpeg")}}, data={{"label": ""}})
    assert sent.status_code == 201
heavy = ["torch", "sklearn", "pandas", "mlflow", "skops", "joblib", "cloudpickle", "bunga.data", "bunga.training"]
heavy += ["bunga.monitor.checks", "bunga.monitor.run", "bunga.monitor.drift", "bunga.monitor.daily"]
heavy += ["bunga.monitor.live", "bunga.monitor.queries"]
print(sorted(m for m in heavy if m in sys.modules))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env={**os.environ}, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_concurrency_limit_answers_503_while_probes_pass(model_dir: Path, tmp_path: Path) -> None:
    """With one slot held by a client that has sent only part of its body, a second request gets 503
    with Retry-After; the probes bypass the limit; the slot is free again once the client leaves."""
    import socket

    server = LiveServer(
        {"BUNGA_DATA_DIR": str(tmp_path / "d"), "BUNGA_MAX_CONCURRENCY": "1"}, ["--model-dir", str(model_dir)], tmp_path
    )
    try:
        assert httpx.post(f"{server.url}/predict", json=IRIS).status_code == 200
        holder = socket.create_connection(("127.0.0.1", server.port))
        holder.sendall(
            b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b'Content-Length: 200\r\n\r\n{"sepal_length": 5.1'
        )
        deadline = time.monotonic() + 10
        # the held request is inside the app once the gauge counts it beside the /metrics request itself
        while "bunga_requests_in_flight 2.0" not in httpx.get(f"{server.url}/metrics").text:
            assert time.monotonic() < deadline, "the held request never reached the app"
            time.sleep(0.05)
        busy = httpx.post(f"{server.url}/predict", json=IRIS)
        assert busy.status_code == 503, busy.text
        assert busy.headers["retry-after"] == "1" and "busy" in busy.json()["detail"]
        assert busy.headers["x-content-type-options"] == "nosniff"
        for probe in ("/health", "/ready", "/metrics"):
            assert httpx.get(f"{server.url}{probe}").status_code == 200, probe
        assert 'bunga_requests_rejected_total{reason="concurrency"} 1.0' in httpx.get(f"{server.url}/metrics").text
        holder.close()
        deadline = time.monotonic() + 10
        while (status := httpx.post(f"{server.url}/predict", json=IRIS).status_code) != 200:
            assert status == 503 and time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        server.stop()


def test_a_client_trickling_its_body_loses_its_slot_at_the_timeout(model_dir: Path, tmp_path: Path) -> None:
    """A real socket sends its body a byte every 0.3 s: at the request timeout it gets 408, the only
    concurrency slot is free again, and a client trickling its *headers* never held a slot at all."""
    import select
    import socket

    env = {"BUNGA_DATA_DIR": str(tmp_path / "d"), "BUNGA_MAX_CONCURRENCY": "1", "BUNGA_REQUEST_TIMEOUT_S": "2"}
    server = LiveServer(env, ["--model-dir", str(model_dir)], tmp_path)
    try:
        slow_headers = socket.create_connection(("127.0.0.1", server.port))
        slow_headers.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-")
        assert httpx.post(f"{server.url}/predict", json=IRIS).status_code == 200  # no slot held by it
        trickler = socket.create_connection(("127.0.0.1", server.port))
        trickler.settimeout(10)
        body = json.dumps(IRIS).encode()
        trickler.sendall(
            b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        started = time.monotonic()
        answer = b""
        for byte in body:
            try:
                trickler.sendall(bytes([byte]))
            except OSError:  # the server answered and closed
                break
            readable, _, _ = select.select([trickler], [], [], 0.3)  # a byte every 0.3 s, or the answer
            if readable:
                answer = trickler.recv(4096)
                break
        elapsed = time.monotonic() - started

        def complete(raw: bytes) -> bool:  # the head and the body may come in separate packets
            head, ended, body = raw.partition(b"\r\n\r\n")
            lines = head.lower().split(b"\r\n")
            length = [int(line.split(b":")[1]) for line in lines if line.startswith(b"content-length")]
            return bool(ended) and bool(length) and len(body) >= length[0]

        while not complete(answer):
            more = trickler.recv(4096)
            if not more:
                break
            answer += more
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b"not received within 2 s" in answer and b"x-content-type-options: nosniff" in answer.lower()
        assert 1.8 <= elapsed <= 6, elapsed
        assert httpx.post(f"{server.url}/predict", json=IRIS).status_code == 200  # the slot is free again
        assert 'bunga_requests_rejected_total{reason="slow_client"} 1.0' in httpx.get(f"{server.url}/metrics").text
        trickler.close()
        slow_headers.close()
    finally:
        server.stop()
