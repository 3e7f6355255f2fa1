"""Interchange with Label Studio: the queue exported as its import file (tasks with signed, expiring
photo URLs and the proposed species as a pre-annotation, plus the labelling configuration), its
JSON export read back as review decisions. Formats as Label Studio documents them; Label Studio
itself is not run."""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
from typer.testing import CliRunner

from bunga.cli import app
from bunga.garden.label_studio import signature
from tests.conftest import LiveServer
from tests.helpers import photo_bytes

KEY = "a-signing-key-for-photo-links-01"


def test_the_queue_goes_to_label_studio_and_its_annotations_come_back(model_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "collected_data"
    env = {"BUNGA_DATA_DIR": str(data), "BUNGA_REVIEW_URL_KEY": KEY, "BUNGA_ADMIN_TOKEN": "test-admin-token-123456"}
    server = LiveServer(env, ["--model-dir", str(model_dir)], tmp_path)
    photos = [photo_bytes("sintetis_ungu", 700 + i) for i in range(3)]
    runner = CliRunner()
    try:
        for i, photo in enumerate(photos):
            sent = httpx.post(
                f"{server.url}/feedback",
                files={"file": ("x.jpg", photo, "image/jpeg")},
                data={"label": "sintetis_ungu", "band": "possible"},
                headers={"X-Forwarded-For": f"10.6.0.{i}"},
            )
            assert sent.status_code == 201
        out = tmp_path / "tasks.json"
        exported = runner.invoke(
            app, ["review", "export", str(out), "--kind", "label-studio", "--base-url", server.url], env=env
        )
        assert exported.exit_code == 0, exported.output
        tasks = json.loads(out.read_text())
        assert len(tasks) == 3
        for task in tasks:  # Label Studio's task import format
            assert set(task) == {"data", "predictions"} and task["data"]["image"].startswith(
                f"{server.url}/review/photos/"
            )
            (prediction,) = task["predictions"]
            (result,) = prediction["result"]
            # the proposal: "not a flower" when the server saw none in the photo, else the visitors' vote
            proposed = "not_a_flower" if task["data"]["band"] == "not_a_flower" else "sintetis_ungu"
            assert result == {
                "from_name": "species",
                "to_name": "image",
                "type": "choices",
                "value": {"choices": [proposed]},
            }
        config = ET.fromstring(out.with_suffix(".xml").read_text())
        image, choices = config.find("Image"), config.find("Choices")
        assert image is not None and image.get("name") == "image" and image.get("value") == "$image"
        assert choices is not None and choices.get("name") == "species" and choices.get("toName") == "image"
        values = {c.get("value") for c in choices.findall("Choice")}
        assert {"sintetis_ungu", "not_a_flower", "reject"} <= values
        # Label Studio fetches each photo without a token, until the link expires
        by_sha = {t["data"]["sha256"]: t for t in tasks}
        sha, task = next(iter(by_sha.items()))
        fetched = httpx.get(task["data"]["image"])
        assert fetched.status_code == 200 and fetched.content in photos
        tampered = task["data"]["image"][:-4] + ("0000" if not task["data"]["image"].endswith("0000") else "1111")
        assert httpx.get(tampered).status_code == 403
        past = int(time.time()) - 10
        expired = f"{server.url}/review/photos/{sha}?expires={past}&signature={signature(KEY, sha, past)}"
        assert httpx.get(expired).status_code == 403
        assert httpx.get(f"{server.url}/review/photos/{sha}").status_code == 401
    finally:
        server.stop()
    # Label Studio's JSON export: one task relabelled, one "not a flower", one whose annotation was cancelled
    shas = list(by_sha)
    annotated = [
        _export_task(1, by_sha[shas[0]], "sintetis_putih", cancelled=False),
        _export_task(2, by_sha[shas[1]], "not_a_flower", cancelled=False),
        _export_task(3, by_sha[shas[2]], "sintetis_ungu", cancelled=True),
    ]
    export = tmp_path / "label-studio-export.json"
    export.write_text(json.dumps(annotated))
    imported = runner.invoke(app, ["review", "import", str(export)], env=env)
    assert imported.exit_code == 0 and "2 decisions recorded" in imported.output, imported.output
    merged = runner.invoke(app, ["merge"], env=env)
    assert "photos: 3 read = 1 kept + 1 rejected + 0 duplicate + 1 queued" in merged.output, merged.output
    assert [p.parent.name for p in (tmp_path / "Dataset Bunga").glob("sintetis_*/*")] == ["sintetis_putih"]
    export.write_text(json.dumps([_export_task(4, by_sha[shas[2]], "bunga_palsu", cancelled=False)]))
    refused = runner.invoke(app, ["review", "import", str(export)], env=env)
    assert refused.exit_code == 1 and "not a species in the catalogue" in refused.output


def _export_task(task_id: int, task: dict[str, object], choice: str, cancelled: bool) -> dict[str, object]:
    """A task as Label Studio's JSON export writes it (``annotations`` with ``result`` items)."""
    return {
        "id": task_id,
        "data": task["data"],
        "annotations": [
            {
                "id": task_id * 10,
                "completed_by": 1,
                "result": [
                    {
                        "value": {"choices": [choice]},
                        "id": f"r{task_id}",
                        "from_name": "species",
                        "to_name": "image",
                        "type": "choices",
                        "origin": "manual",
                    }
                ],
                "was_cancelled": cancelled,
                "ground_truth": False,
                "created_at": "2026-12-04T10:00:00.000000Z",
                "updated_at": "2026-12-04T10:00:00.000000Z",
                "lead_time": 2.5,
            }
        ],
        "predictions": task.get("predictions", []),
    }
