"""Several photos of one plant answered as one observation (#39): over real HTTP, one photo answers
as /predict/image does, several are combined (mean log-probabilities) with photos judged not a
flower left out, the observation id is the server's and a feedback citing it is checked photo by
photo; the log records the observation and the merge keeps it, so the split never parts one plant."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import httpx
import numpy as np

from bunga.imaging import photo_tensor
from bunga.models.observation import combine, log_probabilities
from bunga.monitor.queries import SERVER, Window, observation_counts
from bunga.predict import Predictor
from tests.conftest import LiveServer
from tests.helpers import photo_bytes

ANSWER_FIELDS = (
    "band",
    "species",
    "top",
    "candidates",
    "family",
    "recognised",
    "outcome",
    "abstain_score",
    "not_flower_score",
    "model_name",
    "model_version",
)


def _files(*photos: bytes) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("file", (f"p{i}.jpg", p, "image/jpeg")) for i, p in enumerate(photos)]


def _noise(seed: int) -> bytes:
    from io import BytesIO

    from PIL import Image

    rng = np.random.default_rng(seed)
    buffer = BytesIO()
    Image.fromarray(rng.integers(0, 255, (128, 128, 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def _server(model_dir: Path, tmp_path: Path) -> LiveServer:
    env = {
        "BUNGA_DATA_DIR": str(tmp_path / "collected_data"),
        "BUNGA_FEEDBACK_RATE_PER_MIN": "0",
        "BUNGA_MONITOR_DB": str(tmp_path / "monitor.db"),
    }
    return LiveServer(env, ["--model-dir", str(model_dir)], tmp_path)


def test_one_photo_answers_as_predict_image_and_several_are_combined(model_dir: Path, tmp_path: Path) -> None:
    card = json.loads((model_dir / "photos" / "bunga.json").read_text())
    assert set(card["observation"]) == {"2", "3"}  # thresholds fitted at training for 2 and for 3-5 photos
    first, second = photo_bytes("sintetis_merah", 1), photo_bytes("sintetis_merah", 2)
    # a noise image judged "not a flower": the card's rule is moved between its score and the flowers'
    predictor = Predictor(model_dir / "photos")
    batch = np.stack([photo_tensor(p, 10**8) for p in (first, second, _noise(0))])
    scores = predictor.score_photos(batch)
    flower_max, noise_score = float(scores.not_flower_scores[:2].max()), float(scores.not_flower_scores[2])
    assert noise_score > flower_max
    card["not_flower"]["threshold"] = (flower_max + noise_score) / 2
    (model_dir / "photos" / "bunga.json").write_text(json.dumps(card))
    server = _server(model_dir, tmp_path)
    try:
        alone = httpx.post(f"{server.url}/predict/image", files=_files(first)).json()["results"][0]
        one = httpx.post(f"{server.url}/predict/observation", files=_files(first)).json()
        assert {f: one[f] for f in ANSWER_FIELDS} == {f: alone[f] for f in ANSWER_FIELDS}
        assert one["photo_count"] == one["photos_used"] == 1 and one["observation_id"].startswith("obs_")

        both = httpx.post(f"{server.url}/predict/observation?k=4", files=_files(first, second, _noise(0))).json()
        assert both["photo_count"] == 3 and both["photos_used"] == 2  # the noise photo is left out
        assert [p["band"] for p in both["photos"]][2] == "not_a_flower"
        expected, _ = combine(log_probabilities(scores.probabilities[:2], scores.logits[:2]))
        top = both["top"][0]
        assert top["species"] == predictor.classes[int(expected.argmax())]
        assert abs(top["probability"] - float(expected.max())) < 1e-4  # the mean of the log-probabilities
        assert both["band"] in ("sure", "possible", "not_recognised")
        assert both["observation_id"] != one["observation_id"]

        noise_only = httpx.post(f"{server.url}/predict/observation", files=_files(_noise(1), _noise(2))).json()
        assert noise_only["band"] == "not_a_flower" and noise_only["photos_used"] == 0

        too_many = httpx.post(f"{server.url}/predict/observation", files=_files(*[first] * 6))
        assert 400 <= too_many.status_code < 500 and "detail" in too_many.json()
        empty = httpx.post(f"{server.url}/predict/observation", files={"x": ("a", b"", "text/plain")})
        assert 400 <= empty.status_code < 500

        # feedback citing the observation: its photos, one label for all; nothing else passes
        oid = both["observation_id"]
        voted = httpx.post(
            f"{server.url}/feedback",
            files=_files(first, second),
            data={"label": "sintetis_merah", "observation_id": oid},
        )
        assert voted.status_code == 201, voted.text
        assert len(voted.json()["ids"]) == 2 and voted.json()["observation_id"] == oid
        stranger = photo_bytes("sintetis_ungu", 9)
        wrong = httpx.post(f"{server.url}/feedback", files=_files(first, stranger), data={"observation_id": oid})
        assert wrong.status_code == 422 and "photo 2" in wrong.json()["detail"]
        made_up = httpx.post(f"{server.url}/feedback", files=_files(first), data={"observation_id": "obs_madeup12345"})
        assert made_up.status_code == 422 and "never answered" in made_up.json()["detail"]
        two_alone = httpx.post(f"{server.url}/feedback", files=_files(first, second))
        assert two_alone.status_code == 422 and "observation_id" in two_alone.json()["detail"]
        records = [json.loads(p.read_text()) for p in (tmp_path / "collected_data").rglob("*.json")]
        tagged = [r for r in records if r.get("observation_id") == oid]
        assert len(tagged) == 2 and all(r["label"] == "sintetis_merah" for r in tagged)
        metrics = httpx.get(f"{server.url}/metrics").text
        assert 'bunga_observations_total{photos="3"} 1.0' in metrics
    finally:
        server.stop()
    rows = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(rows) < 3:
        with sqlite3.connect(tmp_path / "monitor.db") as db:
            sql = "SELECT observation_id, observation_photos FROM predictions WHERE observation_id = ?"
            rows = db.execute(sql, (oid,)).fetchall()
        time.sleep(0.2)
    assert rows == [(oid, 3)] * 3  # each photo's own answer, logged with its observation
    with sqlite3.connect(tmp_path / "monitor.db") as db:
        counted = observation_counts(db, both["model_version"], SERVER, Window())
    assert counted == {"1": 1, "2": 1, "3": 1}  # monitoring counts observations by number of photos


def test_a_restarted_server_still_knows_its_observations(model_dir: Path, tmp_path: Path) -> None:
    photo = photo_bytes("sintetis_kuning", 3)
    server = _server(model_dir, tmp_path)
    try:
        oid = httpx.post(f"{server.url}/predict/observation", files=_files(photo, photo)).json()["observation_id"]
    finally:
        server.stop()  # the log is flushed on shutdown; the memory of this worker is gone
    again = _server(model_dir, tmp_path)
    try:
        voted = httpx.post(f"{again.url}/feedback", files=_files(photo), data={"observation_id": oid})
        assert voted.status_code == 201, voted.text  # read back from the prediction log
    finally:
        again.stop()
