"""The backbone is a setting: a Lite1 photo model trains, records its backbone and input size, and
serves over real HTTP at that size; a wrong name is one clear line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from bunga.cli import app
from bunga.predict import Predictor
from tests.conftest import LiveServer

pytestmark = pytest.mark.image
runner = CliRunner()


def test_a_lite1_photo_model_trains_and_serves_at_its_own_size(
    tmp_path: Path, synthetic_photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(synthetic_photos, tmp_path / "collected_data" / "staf")
    monkeypatch.setenv("BUNGA_BACKBONE", "efficientnet-lite1")
    result = runner.invoke(app, ["pipeline", "--kind", "photos"])
    assert result.exit_code == 0, result.output
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"], registry_uri=os.environ["MLFLOW_TRACKING_URI"])
    run = client.get_run(client.get_model_version_by_alias("bunga-photos", "champion").run_id)
    assert run.data.tags["backbone"].startswith("efficientnet-lite1-")
    assert run.data.metrics["onnx_max_abs_diff"] <= 1e-4 and run.data.metrics["test_f1_macro"] >= 0.85
    assert (tmp_path / ".bunga-cache" / "embeddings" / run.data.tags["backbone"]).is_dir()
    assert runner.invoke(app, ["export", "--kind", "photos"]).exit_code == 0
    folder = tmp_path / "bunga-model"
    card = Predictor(folder / "photos").card
    assert (card.input_size, card.family) == (240, "efficientnet-lite1+linear-svm")

    server = LiveServer({"BUNGA_DATA_DIR": str(tmp_path / "inbox")}, ["--model-dir", str(folder)], tmp_path)
    try:
        for species in ("sintetis_merah", "sintetis_ungu"):
            photo = sorted((synthetic_photos / species).glob("*.jpg"))[-1]
            response = httpx.post(
                f"{server.url}/predict/image", files={"file": (photo.name, photo.read_bytes(), "image/jpeg")}
            )
            assert response.status_code == 200, response.text
            assert response.json()["results"][0]["top"][0]["species"] == species
        ready = httpx.get(f"{server.url}/ready")  # the load-time check ran the graph at 240 px
        assert ready.json()["models"]["photos"] == "1" and "photos" not in ready.json()["errors"], ready.text
    finally:
        server.stop()


def test_an_unknown_backbone_is_one_line_naming_the_choices(tmp_path: Path) -> None:
    env = {**os.environ, "BUNGA_BACKBONE": "resnet50"}
    result = subprocess.run(
        [sys.executable, "-m", "bunga", "pipeline", "--kind", "photos"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert "BUNGA_BACKBONE" in result.stderr and "efficientnet-lite1" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
