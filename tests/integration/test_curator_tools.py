"""The curators' tools trust only what they should: a Label Studio import writes only validated
records for photos in the inbox, the review queue proposes from the server's own answer (a visitor's
page's claims are shown as claims), sign-ins are rate-limited, catalogue edits keep what they do not
change, decision words are never species, and a replayed upload cannot change its label."""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
from typer.testing import CliRunner

from bunga.cli import app
from bunga.garden.label_studio import labelling_config
from tests.conftest import LiveServer, copy_sheets
from tests.helpers import photo_bytes
from tests.integration.test_label_studio import _export_task

runner = CliRunner()
TOKEN = "curator-token-for-the-tests-0002"
CURATORS = json.dumps({"ani": hashlib.sha256(TOKEN.encode()).hexdigest()})
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _server(model_dir: Path, tmp_path: Path, **env: str) -> LiveServer:
    base = {
        "BUNGA_DATA_DIR": str(tmp_path / "collected_data"),
        "BUNGA_CURATORS": CURATORS,
        "BUNGA_FEEDBACK_RATE_PER_MIN": "0",
    }
    return LiveServer({**base, **env}, ["--model-dir", str(model_dir)], tmp_path)


def _send(url: str, photo: bytes, client: str = "10.1.0.1", **fields: str) -> httpx.Response:
    return httpx.post(
        f"{url}/feedback",
        files={"file": ("x.jpg", photo, "image/jpeg")},
        data=fields,
        headers={"X-Forwarded-For": client},
    )


def test_a_label_studio_import_records_only_validated_decisions_for_inbox_photos(
    model_dir: Path, tmp_path: Path
) -> None:
    data = tmp_path / "collected_data"
    env = {"BUNGA_DATA_DIR": str(data)}
    server = _server(model_dir, tmp_path)
    try:
        shas = [_send(server.url, photo_bytes("sintetis_ungu", 900 + i)).json()["id"] for i in range(2)]
    finally:
        server.stop()
    decisions = data / "feedback" / "decisions"
    export = tmp_path / "export.json"

    def task(sha: str, choice: str = "sintetis_ungu", task_id: int = 1) -> dict[str, Any]:
        return _export_task(task_id, {"data": {"sha256": sha}}, choice, cancelled=False)

    traversal = task(shas[0])
    traversal["annotations"][0]["completed_by"] = "/../../../../../x"
    not_a_list = {**task(shas[0]), "annotations": 5}
    data_list = {**task(shas[0]), "data": [shas[0]]}
    value_list = task(shas[0])
    value_list["annotations"][0]["result"][0]["value"] = ["sintetis_ungu"]
    unknown_photo = task("e" * 64)
    for bad, why in (
        (traversal, "not a Label Studio user id"),
        (not_a_list, "'annotations' is not a list"),
        (data_list, "has no sha256"),
        (value_list, "'value.choices' is not a list"),
        (unknown_photo, "is not in the inbox"),
    ):
        export.write_text(json.dumps([task(shas[1], task_id=7), bad]))
        refused = runner.invoke(app, ["review", "import", str(export)], env=env)
        assert refused.exit_code == 1 and why in refused.output and "task 1" in refused.output, refused.output
        assert len(refused.output.strip().splitlines()) == 1, refused.output
        assert not decisions.exists() or not list(decisions.iterdir())  # nothing recorded, not even task 7
    assert not list(tmp_path.rglob("x.json")) and not list(Path("/").glob("x.json"))
    export.write_text(json.dumps([task(shas[0], task_id=3)] * 50))  # one task repeated: one decision
    imported = runner.invoke(app, ["review", "import", str(export)], env=env)
    assert imported.exit_code == 0 and "1 decisions recorded" in imported.output, imported.output
    (record,) = decisions.iterdir()
    assert record.name.endswith("-label-studio-1.json")


def test_the_queue_proposes_from_the_servers_own_answer(model_dir: Path, tmp_path: Path) -> None:
    """A visitor's page claiming "tulip, sure" (or any text) is shown as a claim; the queue shows,
    proposes and orders by what the server answered when the photo arrived. Queue and decisions are
    never cached."""
    server = _server(model_dir, tmp_path)
    photo = photo_bytes("sintetis_kuning", 910)
    try:
        said = httpx.post(f"{server.url}/predict/image", files={"file": ("x.jpg", photo, "image/jpeg")}).json()
        answer = said["results"][0]
        assert _send(server.url, photo, predicted="tulip", band="sure").status_code == 201
        advert = "Hubungi 0812-XXXX untuk hadiah"
        assert _send(server.url, photo_bytes("sintetis_kuning", 911), "10.1.0.2", predicted=advert).status_code == 201
        queue = httpx.get(f"{server.url}/review/queue", headers=AUTH)
        assert queue.headers["cache-control"] == "no-store"
        entry = next(e for e in queue.json() if e["claimed_species"] == "tulip")
        assert (entry["species"], entry["band"]) == (answer["species"], answer["band"])
        assert entry["claimed_band"] == "sure" and entry["model_version"] == answer["model_version"]
        assert entry["proposed"] == answer["species"] != "tulip"
        other = next(e for e in queue.json() if e["claimed_species"] == advert)
        assert other["proposed"] != advert and other["species"] != advert
        decided = httpx.post(
            f"{server.url}/review/decisions", headers=AUTH, json={"sha256": entry["sha256"], "decision": "reject"}
        )
        assert decided.status_code == 201 and decided.headers["cache-control"] == "no-store"
    finally:
        server.stop()


def test_a_photo_the_server_sees_no_flower_in_is_proposed_as_not_a_flower(model_dir: Path, tmp_path: Path) -> None:
    """The server answers "not a flower" (here for every photo): the queue proposes not_a_flower, a
    visitor agreeing sends the vote ``not_a_flower``, and two agreeing visitors make the merge reject
    the photo as not a flower, never make it a class."""
    card_path = model_dir / "photos" / "bunga.json"
    card = json.loads(card_path.read_text())
    card["not_flower"]["threshold"] = -1.0
    card_path.write_text(json.dumps(card))
    data = copy_sheets(tmp_path / "collected_data")  # the merge needs something to keep
    server = _server(model_dir, tmp_path)
    photo = photo_bytes("sintetis_merah", 920)
    try:
        for client in ("10.2.0.1", "10.2.0.2"):
            assert _send(server.url, photo, client, label="not_a_flower", predicted="sintetis_merah").status_code == 201
        (entry,) = httpx.get(f"{server.url}/review/queue", headers=AUTH).json()
        assert entry["band"] == "not_a_flower" and entry["proposed"] == "not_a_flower"
        assert entry["votes"] == {"not_a_flower": 2}
    finally:
        server.stop()
    merged = runner.invoke(app, ["merge"], env={"BUNGA_DATA_DIR": str(data)})
    assert merged.exit_code == 0, merged.output
    dataset = tmp_path / "Dataset Bunga"
    assert "visitors agreed: not a flower" in (dataset / "rejected.csv").read_text()
    assert not (dataset / "not_a_flower").exists()


def test_smaller_faults_of_the_curators_tools(model_dir: Path, tmp_path: Path) -> None:
    # (b) a curator's token from one command, admitted by the setting it prints
    made = runner.invoke(app, ["curator", "add", "budi"])
    assert made.exit_code == 0, made.output
    token = re.search(r"shown only now\): (\S+)", made.output)
    setting = re.search(r"BUNGA_CURATORS='(.+)'", made.output)
    assert token and setting
    server = _server(model_dir, tmp_path, BUNGA_CURATORS=setting.group(1))
    url = server.url
    try:
        assert (
            httpx.get(f"{url}/review/queue", headers={"Authorization": f"Bearer {token.group(1)}"}).status_code == 200
        )
        # (a) wrong tokens from one address: 403 ten times, then 429 with Retry-After; others unaffected
        wrong = [
            httpx.get(f"{url}/review/queue", headers={"Authorization": "Bearer nope", "X-Forwarded-For": "10.3.0.1"})
            for _ in range(12)
        ]
        assert [w.status_code for w in wrong] == [403] * 10 + [429] * 2
        assert int(wrong[-1].headers["retry-after"]) >= 1
        right = {"Authorization": f"Bearer {token.group(1)}", "X-Forwarded-For": "10.3.0.2"}
        assert httpx.get(f"{url}/review/queue", headers=right).status_code == 200
        # (c) a signature with a non-ASCII character
        sha = _send(url, photo_bytes("sintetis_ungu", 930)).json()["id"]
        odd = httpx.get(f"{url}/review/photos/{sha}?expires={int(time.time()) + 60}&signature=%C3%A9")
        assert odd.status_code == 403
        # (d) an edit keeps what it does not change, the reference photo included
        auth = {"Authorization": f"Bearer {token.group(1)}"}
        first = httpx.post(
            f"{url}/review/species",
            headers=auth,
            data={
                "id": "kembang_sepatu",
                "nama": "Kembang sepatuu",
                "latin": "Hibiscus rosa-sinensis",
                "famili": "Malvaceae",
            },
            files={"file": ("r.jpg", photo_bytes("sintetis_merah", 931), "image/jpeg")},
        )
        assert first.status_code == 201, first.text
        fixed = httpx.post(
            f"{url}/review/species", headers=auth, data={"id": "kembang_sepatu", "nama": "Kembang sepatu"}
        )
        assert fixed.status_code == 201 and fixed.json()["latin"] == "Hibiscus rosa-sinensis"
        assert fixed.json()["famili"] == "Malvaceae" and fixed.json()["nama"] == "Kembang sepatu"
        assert httpx.get(f"{url}/species/kembang_sepatu/photo").status_code == 200
        # (e) control characters in catalogue text; (f) decision words as species ids
        tab = httpx.post(f"{url}/review/species", headers=auth, data={"id": "lili", "nama": "Lili\tputih"})
        assert tab.status_code == 422 and "control character" in tab.text
        reserved = httpx.post(f"{url}/review/species", headers=auth, data={"id": "not_a_flower", "nama": "X"})
        assert reserved.status_code == 422 and "decision word" in reserved.text
        # (g) an upload replayed with its key and another label is refused; the same one is answered
        key = {"Idempotency-Key": "replay-key-0001"}
        photo = photo_bytes("sintetis_ungu", 932)
        files = {"file": ("x.jpg", photo, "image/jpeg")}
        assert (
            httpx.post(f"{url}/feedback", files=files, data={"label": "sintetis_ungu"}, headers=key).status_code == 201
        )
        again = httpx.post(f"{url}/feedback", files=files, data={"label": "sintetis_merah"}, headers=key)
        assert again.status_code == 422 and "Idempotency-Key" in again.text
        same = httpx.post(f"{url}/feedback", files=files, data={"label": "sintetis_ungu"}, headers=key)
        assert same.status_code == 201 and same.json()["label"] == "sintetis_ungu"
    finally:
        server.stop()
    env = {"BUNGA_DATA_DIR": str(tmp_path / "collected_data")}
    for argv, why in (
        (["catalog", "add", "reject", "--nama", "Tolak"], "decision word"),
        (["catalog", "add", "lili", "--nama", "Lili\nputih"], "control character"),
        (["catalog", "add", "lili", "--nama", "Lili", "--curator", "../x"], "curator name"),
    ):
        refused = runner.invoke(app, argv, env=env)
        assert refused.exit_code in (1, 2) and why in refused.output, refused.output
    listed = runner.invoke(app, ["catalog", "list"], env=env)
    assert all(line.count("\t") == 2 for line in listed.output.strip().splitlines()), listed.output
    config = labelling_config(["rose", "reject", "rose"])
    assert config.count('value="reject"') == 1 and config.count('value="rose"') == 1


def test_a_new_champion_reaches_bunga_serve_without_a_restart(model_dir: Path, tmp_path: Path) -> None:
    """`bunga serve` reloads by default: a newly exported version is served within seconds."""
    server = LiveServer({"BUNGA_DATA_DIR": str(tmp_path / "d")}, ["--model-dir", str(model_dir)], tmp_path)
    try:
        before = httpx.get(f"{server.url}/model").json()["models"]["photos"]["version"]
        card_path = model_dir / "photos" / "bunga.json"
        card = json.loads(card_path.read_text())
        card["version"] = str(int(before) + 1)
        card_path.write_text(json.dumps(card))
        deadline = time.monotonic() + 30
        while httpx.get(f"{server.url}/model").json()["models"]["photos"]["version"] == before:
            assert time.monotonic() < deadline, "the new version was not picked up"
            time.sleep(0.5)
    finally:
        server.stop()
