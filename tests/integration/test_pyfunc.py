"""The registered photo model answers as the server does (#40): loaded with
``mlflow.pyfunc.load_model`` or served by ``mlflow models serve --env-manager local``, it takes photos
as a user has them and returns the band, species and named candidates ``/predict/image`` returns."""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

from tests.conftest import LiveServer, _free_port, credit_synthetic_photos, run_in_workspace
from tests.helpers import photo_bytes

PNG = b"\x89PNG"
STYLES = ("sintetis_merah", "sintetis_kuning", "sintetis_ungu", "sintetis_putih")


def _noise(seed: int) -> bytes:
    from io import BytesIO

    import numpy as np
    from PIL import Image

    buffer = BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, synthetic_photos: Path) -> Path:
    """A photo model of this module's own: the session's workspace registry is promoted to and rolled
    back by other tests, so its champion is not the one its exported folder holds."""
    ws = tmp_path_factory.mktemp("pyfunc")
    shutil.copytree(synthetic_photos, ws / "collected_data" / "staf")
    credit_synthetic_photos(ws / "collected_data" / "staf")
    run_in_workspace(ws, ["pipeline", "--kind", "photos"], ["export", "--kind", "photos"])
    return ws


@pytest.fixture
def photos(tmp_path: Path) -> list[Path]:
    """Generated flowers of every style and two everyday (noise) photos, as files."""
    out = []
    for i, data in enumerate([*(photo_bytes(s, 20 + n) for s in STYLES for n in range(2)), _noise(1), _noise(2)]):
        suffix = "png" if data.startswith(PNG) else "jpg"
        path = tmp_path / f"p{i}.{suffix}"
        path.write_bytes(data)
        out.append(path)
    return out


def test_the_registered_model_answers_as_the_server(workspace: Path, tmp_path: Path, photos: list[Path]) -> None:
    import mlflow

    uri = f"sqlite:///{workspace / 'mlflow.db'}"
    before = mlflow.get_registry_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)  # another test may have pointed the registry elsewhere in this process
    try:
        model = mlflow.pyfunc.load_model("models:/bunga-photos@champion")
    finally:
        mlflow.set_registry_uri(before)
    names = {i.name for i in model.metadata.get_input_schema().inputs}
    assert names == {"path", "image"}  # photos as a user has them, not tensors
    outputs = {o.name for o in model.metadata.get_output_schema().inputs}
    assert {"band", "species", "top_species", "top_names", "candidates", "model_run_id"} <= outputs
    by_path = model.predict(pd.DataFrame({"path": [str(p) for p in photos]}))
    by_bytes = model.predict(pd.DataFrame({"image": [p.read_bytes() for p in photos]}))
    assert by_path.to_dict("records") == by_bytes.to_dict("records")
    model_dir = workspace / "bunga-model"
    server = LiveServer({"BUNGA_DATA_DIR": str(tmp_path / "d")}, ["--model-dir", str(model_dir)], tmp_path)
    try:
        for photo, row in zip(photos, by_path.to_dict("records"), strict=True):
            files = {"file": (photo.name, photo.read_bytes(), "image/jpeg")}
            (served,) = httpx.post(f"{server.url}/predict/image", files=files).json()["results"]
            assert (row["band"], row["species"]) == (served["band"], served["species"]), photo.name
            assert list(row["top_species"]) == [c["species"] for c in served["top"]]
            assert list(row["top_names"]) == [c["info"]["nama"] for c in served["top"]]
            assert list(row["candidates"]) == served["candidates"]
            for mine, theirs in zip(row["top_probabilities"], served["top"], strict=True):
                assert abs(mine - theirs["probability"]) < 1e-5
    finally:
        server.stop()
    bands = set(by_path["band"])
    assert "not_a_flower" in bands or "not_recognised" in bands  # the everyday photos are refused, not named


@pytest.mark.slow
def test_mlflow_models_serve_answers_with_bands(workspace: Path, tmp_path: Path, photos: list[Path]) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{workspace / 'mlflow.db'}",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",  # its uvicorn
    }
    cmd = [sys.executable, "-m", "mlflow", "models", "serve", "-m", "models:/bunga-photos@champion"]
    cmd += ["--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1"]
    log = (tmp_path / "mlflow-serve.log").open("w")
    # its own session: mlflow starts uvicorn as a child, and the whole group is stopped at the end
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ping", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            raise AssertionError((tmp_path / "mlflow-serve.log").read_text()[-2000:])
        encoded = [[base64.b64encode(p.read_bytes()).decode()] for p in photos[:2]]
        body = {"dataframe_split": {"columns": ["image"], "data": encoded}}
        answer = httpx.post(f"http://127.0.0.1:{port}/invocations", json=body, timeout=60)
        assert answer.status_code == 200, answer.text
        (first, second) = answer.json()["predictions"]
        assert first["band"] in ("sure", "possible") and first["species"] == "sintetis_merah"
        assert first["top_names"][0] and first["model_run_id"]
        assert second["species"] == "sintetis_merah"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
