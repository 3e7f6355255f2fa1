"""Other flowers (outlier exposure): photos staff put in an ``other_flowers/`` folder (or a curator
labels so) are one more class the model learns and never names. A photo whose best class is the pool
is answered "not recognised", on the server and in the rules the phone follows; visitors cannot vote
for it; curators can; the gate's macro-F1 covers the named species only."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest

from bunga.imaging import photo_tensor
from bunga.predict import Predictor
from bunga.training.evaluate import evaluate
from tests.conftest import LiveServer, copy_sheets, credit_synthetic_photos, run_in_workspace

TOKEN = "curator-token-for-the-tests-0003"
NAMED = ("sintetis_merah", "sintetis_kuning", "sintetis_ungu")


@pytest.fixture(scope="module")
def pooled_model(tmp_path_factory: pytest.TempPathFactory, synthetic_photos: Path) -> Path:
    """A photo model taught three generated species, with the fourth's photos as its other_flowers pool."""
    ws = tmp_path_factory.mktemp("pooled")
    copy_sheets(ws / "collected_data")
    staff = ws / "collected_data" / "staf"
    for name in NAMED:
        shutil.copytree(synthetic_photos / name, staff / name)
    shutil.copytree(synthetic_photos / "sintetis_putih", staff / "other_flowers")
    credit_synthetic_photos(staff)
    run_in_workspace(ws, ["pipeline", "--kind", "photos"], ["export", "--kind", "photos"])
    return ws / "bunga-model"


def test_the_pool_is_learned_and_never_named(pooled_model: Path, synthetic_photos: Path, tmp_path: Path) -> None:
    predictor = Predictor(pooled_model / "photos")
    assert predictor.classes == sorted([*NAMED, "other_flowers"]) and predictor.pool is not None
    pool_photos = sorted((synthetic_photos / "sintetis_putih").glob("*.jpg"))
    scores = predictor.score_photos(np.stack([photo_tensor(p, 10**8) for p in pool_photos]))
    won = scores.probabilities.argmax(axis=1) == predictor.pool
    assert won.mean() >= 0.75 and not scores.recognised[won].any()  # the pool won: never recognised
    curators = json.dumps({"ani": hashlib.sha256(TOKEN.encode()).hexdigest()})
    env = {"BUNGA_DATA_DIR": str(tmp_path / "d"), "BUNGA_CURATORS": curators, "BUNGA_FEEDBACK_RATE_PER_MIN": "0"}
    server = LiveServer(env, ["--model-dir", str(pooled_model)], tmp_path)
    try:
        for photo in pool_photos[:6]:
            files = {"file": ("p.jpg", photo.read_bytes(), "image/jpeg")}
            (result,) = httpx.post(f"{server.url}/predict/image?k=4", files=files).json()["results"]
            named = {c["species"] for c in result["top"]} | set(result["candidates"]) | {result["species"]}
            assert "other_flowers" not in named, result  # never an answer, a candidate or a suggestion
            assert len(result["top"]) == 3  # the three named species, the pool left out
        rules = httpx.get(f"{server.url}/models/photos/rules").json()
        assert rules["pool"] == rules["classes"].index("other_flowers")  # the phone refuses the same way
        metrics = httpx.get(f"{server.url}/metrics").text
        assert 'bunga_predictions_total{kind="photos",species="_other_flowers"' in metrics  # how often it wins
        photo = {"file": ("p.jpg", pool_photos[0].read_bytes(), "image/jpeg")}
        vote = httpx.post(f"{server.url}/feedback", files=photo, data={"label": "other_flowers"})
        assert vote.status_code == 422  # visitors cannot vote for the pool
        sha = httpx.post(f"{server.url}/feedback", files=photo).json()["id"]
        decided = httpx.post(
            f"{server.url}/review/decisions",
            json={"sha256": sha, "decision": "label", "label": "other_flowers"},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert decided.status_code == 201  # a curator can: "another species, not in the catalogue"
    finally:
        server.stop()


def test_the_gate_judges_the_named_species_and_reports_the_pool() -> None:
    truth = ["a", "a", "b", "b", "other_flowers", "other_flowers"]
    said = ["a", "other_flowers", "b", "b", "other_flowers", "a"]
    report = evaluate(truth, said, ["a", "b", "other_flowers"], "photos")
    named = evaluate(["a", "a", "b", "b"], ["a", "x", "b", "b"], ["a", "b"], "photos")
    assert report.lost_to_pool == 0.25  # one of the four named photos went to the pool
    assert report.f1_macro == pytest.approx((report.per_class["a"].f1 + report.per_class["b"].f1) / 2)
    assert named.lost_to_pool is None
