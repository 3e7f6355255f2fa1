"""Abuse limits on the public endpoints: the inbox quota, per-client rate limits behind a trusted
proxy, a full disk while storing feedback, and a photo model without its abstention section."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from bunga.config import Settings
from bunga.garden.quota import LEDGER, LOCK
from bunga.garden.records import SALT_FILE
from bunga.serving.app import create_app
from tests.conftest import LiveServer
from tests.helpers import photo_bytes

IRIS = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


def _client(model_dir: Path, data_dir: Path, **overrides: object) -> TestClient:
    settings = Settings(model_dir=model_dir, data_dir=data_dir, **overrides)  # type: ignore[arg-type]
    return TestClient(create_app(settings), raise_server_exceptions=False)


def _files(folder: Path) -> list[str]:
    """Every file under ``folder`` (hidden temp files included) but the inbox's voter secret and the
    quota's ledger."""
    own = {SALT_FILE, LEDGER, LOCK}
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name not in own)


def _photo(seed: int) -> dict[str, tuple[str, bytes, str]]:
    return {"file": ("x.jpg", photo_bytes("sintetis_merah", seed), "image/jpeg")}


def test_a_full_inbox_answers_507_and_stores_nothing(model_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "collected_data"
    env = {"BUNGA_DATA_DIR": str(data), "BUNGA_INBOX_MAX_FILES": "4", "BUNGA_FEEDBACK_RATE_PER_MIN": "0"}
    server = LiveServer(env, ["--model-dir", str(model_dir)], tmp_path)
    try:
        url = server.url
        for seed in (1, 2):  # a photo and its record: two files each
            stored = httpx.post(f"{url}/feedback", files=_photo(seed), data={"label": "sintetis_merah"})
            assert stored.status_code == 201
        before = _files(data)
        full = httpx.post(f"{url}/feedback", files=_photo(3), data={"label": "sintetis_merah"})
        assert full.status_code == 507 and "inbox is full" in full.json()["detail"]
        assert httpx.post(f"{url}/feedback", json={**IRIS, "label": "setosa"}).status_code == 507
        assert _files(data) == before
        assert httpx.post(f"{url}/predict", json=IRIS).status_code == 200  # predictions go on
        inbox = httpx.get(f"{url}/model").json()["inbox"]
        assert inbox["files"] == 4 and inbox["max_files"] == 4 and inbox["bytes"] > 0
        metrics = httpx.get(f"{url}/metrics").text
        assert 'bunga_requests_rejected_total{reason="inbox_quota"} 2.0' in metrics
        assert "bunga_inbox_files 4.0" in metrics
    finally:
        server.stop()
    env = {**env, "BUNGA_INBOX_MAX_FILES": "50000", "BUNGA_INBOX_MAX_BYTES": "10000"}
    server = LiveServer(env, ["--model-dir", str(model_dir)], tmp_path)  # the byte quota, read from disk anew
    try:
        full = httpx.post(f"{server.url}/feedback", files=_photo(4), data={"label": "sintetis_merah"})
        assert full.status_code == 507 and "bytes used" in full.json()["detail"]
    finally:
        server.stop()


def test_the_quota_holds_for_concurrent_uploads_on_two_workers(model_dir: Path, tmp_path: Path) -> None:
    """40 distinct photos sent at once to 2 workers against a quota of 20 files (10 uploads of a photo
    and its record): at most 10 stored, every other answer 507, nothing partial."""
    import asyncio

    data = tmp_path / "collected_data"
    env = {"BUNGA_DATA_DIR": str(data), "BUNGA_INBOX_MAX_FILES": "20", "BUNGA_FEEDBACK_RATE_PER_MIN": "0"}
    server = LiveServer(env, ["--model-dir", str(model_dir), "--workers", "2"], tmp_path)
    photos = [photo_bytes("sintetis_merah", 100 + i) for i in range(40)]

    async def send() -> list[int]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
            answers = await asyncio.gather(
                *(
                    http.post("/feedback", files={"file": ("x.jpg", p, "image/jpeg")}, data={"label": "sintetis_merah"})
                    for p in photos
                )
            )
        return [a.status_code for a in answers]

    try:
        statuses = asyncio.run(send())
        inbox = httpx.get(f"{server.url}/model").json()["inbox"]
    finally:
        server.stop()
    stored = [p for p in _files(data / "feedback") if p.endswith(".jpg")]
    records = [p for p in _files(data / "feedback") if p.endswith(".json")]
    assert set(statuses) <= {201, 507} and 1 <= statuses.count(201) <= 10, statuses
    assert len(stored) == len(records) == statuses.count(201)
    assert len(_files(data / "feedback")) == 2 * len(stored)  # no temp file left
    assert inbox["files"] <= 20


def test_tries_of_one_upload_arriving_together_are_stored_and_charged_once(model_dir: Path, tmp_path: Path) -> None:
    """A phone's queued upload sent again while its first try is still being stored (the same
    Idempotency-Key, 20 tries at once on 2 workers): every try answers 201 with the one record, the
    quota is charged once, so a quota of two uploads still takes another visitor's photo."""
    import asyncio

    data = tmp_path / "collected_data"
    env = {"BUNGA_DATA_DIR": str(data), "BUNGA_INBOX_MAX_FILES": "4", "BUNGA_FEEDBACK_RATE_PER_MIN": "0"}
    server = LiveServer(env, ["--model-dir", str(model_dir), "--workers", "2"], tmp_path)
    photo = photo_bytes("sintetis_merah", 300, size=1024)

    async def send() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
            return list(
                await asyncio.gather(
                    *(
                        http.post(
                            "/feedback",
                            files={"file": ("x.jpg", photo, "image/jpeg")},
                            data={"label": "sintetis_merah"},
                            headers={"Idempotency-Key": "one-upload-0001"},
                        )
                        for _ in range(20)
                    )
                )
            )

    try:
        tries = asyncio.run(send())
        charged = httpx.get(f"{server.url}/model").json()["inbox"]["files"]
        other = httpx.post(f"{server.url}/feedback", files=_photo(301), data={"label": "sintetis_merah"})
    finally:
        server.stop()
    assert [t.status_code for t in tries] == [201] * 20, [t.text for t in tries if t.status_code != 201]
    assert len({t.json()["id"] for t in tries}) == 1
    assert charged == 2  # the photo and its record, once
    assert other.status_code == 201, other.text
    assert len([p for p in _files(data / "feedback") if p.endswith(".json")]) == 2


def test_the_feedback_rate_limit_is_on_by_default(model_dir: Path, tmp_path: Path) -> None:
    """No rate setting at all: one address gets the default burst of 10, then 429 with Retry-After."""
    defaults = Settings()
    assert defaults.feedback_rate_per_min > 0 and defaults.feedback_burst == 10
    server = LiveServer({"BUNGA_DATA_DIR": str(tmp_path / "d")}, ["--model-dir", str(model_dir)], tmp_path)
    try:
        statuses = [httpx.post(f"{server.url}/feedback", json={**IRIS, "label": "setosa"}) for _ in range(11)]
    finally:
        server.stop()
    assert [s.status_code for s in statuses] == [201] * 10 + [429]
    assert int(statuses[-1].headers["Retry-After"]) >= 1


def _feedback(url: str, forwarded_for: str) -> httpx.Response:
    body = {**IRIS, "label": "setosa"}
    return httpx.post(f"{url}/feedback", json=body, headers={"X-Forwarded-For": forwarded_for}, timeout=10)


def test_feedback_rate_limit_per_client_behind_a_trusted_proxy(model_dir: Path, tmp_path: Path) -> None:
    """127.0.0.1 is the trusted proxy: each forwarded client has its own bucket of 3; a client cannot
    escape its bucket by prepending addresses to X-Forwarded-For."""
    env = {"BUNGA_DATA_DIR": str(tmp_path / "d"), "BUNGA_FEEDBACK_BURST": "3", "BUNGA_FEEDBACK_RATE_PER_MIN": "6"}
    server = LiveServer(env, ["--model-dir", str(model_dir)], tmp_path)
    try:
        assert [_feedback(server.url, "10.0.0.1").status_code for _ in range(3)] == [201, 201, 201]
        refused = _feedback(server.url, "10.0.0.1")
        assert refused.status_code == 429 and "too many requests" in refused.json()["detail"]
        assert 1 <= int(refused.headers["Retry-After"]) <= 10
        assert _feedback(server.url, "9.9.9.9, 10.0.0.1").status_code == 429  # the proxy appended the real one
        assert _feedback(server.url, "10.0.0.2").status_code == 201  # another visitor is not affected
        forwarded = {"X-Forwarded-For": "10.0.0.1"}
        assert httpx.post(f"{server.url}/predict", json=IRIS, headers=forwarded).status_code == 200
        metrics = httpx.get(f"{server.url}/metrics").text
        assert 'bunga_requests_rejected_total{reason="rate_feedback"} 2.0' in metrics
    finally:
        server.stop()
    env = {**env, "BUNGA_TRUSTED_PROXIES": "[]", "BUNGA_PREDICT_RATE_PER_MIN": "60", "BUNGA_PREDICT_BURST": "2"}
    server = LiveServer(env, ["--model-dir", str(model_dir)], tmp_path)
    try:  # no trusted proxy: the header is the client's own words, and everyone here is 127.0.0.1
        statuses = [_feedback(server.url, f"10.0.1.{i}").status_code for i in range(4)]
        assert statuses == [201, 201, 201, 429]
        predicts = [httpx.post(f"{server.url}/predict", json=IRIS).status_code for _ in range(3)]
        assert predicts == [200, 200, 429]
        photo = httpx.post(f"{server.url}/predict/image", files=_photo(1))
        assert photo.status_code == 429 and photo.headers["Retry-After"]
    finally:
        server.stop()


@pytest.fixture
def tiny_disk(tmp_path: Path) -> object:
    """A 1 MB tmpfs mounted where the feedback inbox lives (root only); None where mounting is not allowed."""
    mount = tmp_path / "collected_data" / "feedback"
    mount.mkdir(parents=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        yield None
        return
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_answers_507_and_leaves_no_partial_file(
    model_dir: Path, tmp_path: Path, tiny_disk: Path | None
) -> None:
    """A real full filesystem (a 1 MB tmpfs over the inbox), over real HTTP."""
    import random

    from PIL import Image

    if tiny_disk is None:
        if os.environ.get("CI") == "true" and os.geteuid() == 0:
            pytest.fail("CI runs as root but could not mount a tmpfs for the full-disk test")
        pytest.skip("mounting a tmpfs needs root")
    rng = random.Random(0)
    noise = Image.frombytes("RGB", (700, 700), bytes(rng.getrandbits(8) for _ in range(700 * 700 * 3)))
    big = tmp_path / "noise.png"
    noise.save(big)  # about 1.5 MB: more than the tiny disk holds
    env = {"BUNGA_DATA_DIR": str(tmp_path / "collected_data")}
    server = LiveServer(env, ["--model-dir", str(model_dir)], tmp_path)
    try:
        full = httpx.post(f"{server.url}/feedback", files={"file": ("n.png", big.read_bytes(), "image/png")})
        assert full.status_code == 507 and "disk is full" in full.json()["detail"]
        assert _files(tiny_disk) == []  # no partial photo, no hidden temp file
        assert httpx.post(f"{server.url}/predict/image", files=_photo(5)).status_code == 200  # still serving
        assert 'bunga_requests_rejected_total{reason="disk_full"} 1.0' in httpx.get(f"{server.url}/metrics").text
    finally:
        server.stop()


def test_a_record_that_cannot_be_written_takes_its_photo_back(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Injected at the write call: the metadata record fails after the photo was written."""
    import bunga.garden.records

    def no_space(path: Path, text: str) -> None:
        raise OSError(28, "No space left on device")

    data = tmp_path / "collected_data"
    with _client(model_dir, data) as c:
        monkeypatch.setattr(bunga.garden.records, "atomic_write_text", no_space)
        full = c.post("/feedback", files=_photo(5), data={"label": "sintetis_merah"})
        assert full.status_code == 507
        assert _files(data) == []
        assert c.post("/predict/image", files=_photo(5)).status_code == 200  # still serving
        assert 'reason="disk_full"' in c.get("/metrics").text


def test_a_photo_model_without_abstention_is_refused_at_load(model_dir: Path, tmp_path: Path) -> None:
    card_path = model_dir / "photos" / "bunga.json"
    card = json.loads(card_path.read_text())
    card["abstention"] = None
    card_path.write_text(json.dumps(card))
    with _client(model_dir, tmp_path / "d") as c:
        ready = c.get("/ready")
        assert ready.status_code == 200  # the measurement model still serves
        said = ready.json()["models"]["photos"]
        assert said.startswith("error:") and "no abstention" in said
        model = c.get("/model").json()
        assert "photos" not in model["models"] and "no abstention" in model["errors"]["photos"]
        assert c.post("/predict/image", files=_photo(1)).status_code == 503
