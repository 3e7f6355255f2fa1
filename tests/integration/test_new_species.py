"""New species from the garden: a curator adds one (API or CLI); every worker serves it without a
restart, visitors vote for it, curators label with it, and the next merge writes it into the dataset
version (its digest changes with the catalogue)."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from bunga.catalog import Catalog, SpeciesInfo, load_catalog
from bunga.cli import app
from bunga.errors import BungaError
from bunga.garden import catalog_edits
from tests.conftest import LiveServer
from tests.helpers import photo_bytes

TOKEN = "a-curators-token-0000000003"
CURATOR = {"Authorization": f"Bearer {TOKEN}"}
runner = CliRunner()


def _wait_for(check: object, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError("not seen in time")


def test_edits_apply_latest_first_and_mark_new_species() -> None:
    base = Catalog({"mawar": SpeciesInfo(id="mawar", nama="Mawar", famili="Rosaceae")})
    first = catalog_edits.parse(
        catalog_edits.record(catalog_edits.entry("Kembang Sepatu", {"nama": "Kembang"}), "ani")[1]
    )
    time.sleep(0.001)
    later = catalog_edits.parse(
        catalog_edits.record(catalog_edits.entry("kembang_sepatu", {"nama": "Bunga raya"}), "budi")[1]
    )
    rose = catalog_edits.parse(catalog_edits.record(catalog_edits.entry("mawar", {"nama": "Mawar merah"}), "ani")[1])
    assert first is not None and later is not None and rose is not None
    merged = catalog_edits.apply(base, [later, first, rose])
    assert merged.entries["kembang_sepatu"].nama == "Bunga raya" and merged.entries["kembang_sepatu"].added
    assert merged.entries["mawar"].nama == "Mawar merah" and not merged.entries["mawar"].added
    assert catalog_edits.parse('{"kind": "decision"}') is None and catalog_edits.parse("not json") is None
    for bad in ("1abc", "a", "x" * 61, "mawar!"):
        with pytest.raises(BungaError, match="not usable as a class"):
            catalog_edits.species_id(bad)
    with pytest.raises(BungaError, match="needs its name"):
        catalog_edits.entry("melati", {"nama": "  "})


def test_a_species_added_on_one_worker_is_served_by_all_and_reaches_the_dataset(
    model_dir: Path, tmp_path: Path
) -> None:
    data = tmp_path / "collected_data"
    env = {
        "BUNGA_DATA_DIR": str(data),
        "BUNGA_CURATORS": json.dumps({"ani": hashlib.sha256(TOKEN.encode()).hexdigest()}),
        "BUNGA_CATALOG_REFRESH_S": "0.2",
        "BUNGA_FEEDBACK_RATE_PER_MIN": "0",
    }
    servers = [LiveServer(env, ["--model-dir", str(model_dir)], tmp_path) for _ in range(2)]  # two workers, one disk
    a, b = (s.url for s in servers)
    photo = photo_bytes("sintetis_merah", 900)
    try:
        vote = {"label": "kembang_sepatu"}
        early = httpx.post(f"{b}/feedback", files={"file": ("x.jpg", photo, "image/jpeg")}, data=vote)
        assert early.status_code == 422 and "unknown label" in early.json()["detail"]

        form = {
            "id": "Kembang Sepatu",
            "nama": "Kembang sepatu",
            "latin": "Hibiscus rosa-sinensis",
            "famili": "Malvaceae",
        }
        reference = {"file": ("ref.jpg", photo_bytes("sintetis_merah", 901), "image/jpeg")}
        assert httpx.post(f"{a}/review/species", data=form, files=reference).status_code == 401
        refused = {
            "bad id": (httpx.post(f"{a}/review/species", data={**form, "id": "1 bunga"}, headers=CURATOR), 422),
            "no name": (httpx.post(f"{a}/review/species", data={**form, "nama": ""}, headers=CURATOR), 422),
            "not a photo": (
                httpx.post(
                    f"{a}/review/species", data=form, files={"file": ("r.jpg", b"GIF89a", "image/gif")}, headers=CURATOR
                ),
                415,
            ),
            "json": (httpx.post(f"{a}/review/species", json=form, headers=CURATOR), 415),
        }
        for why, (response, status) in refused.items():
            assert response.status_code == status, (why, response.text)
            assert isinstance(response.json()["detail"], str) and response.json()["detail"], why
        added = httpx.post(f"{a}/review/species", data=form, files=reference, headers=CURATOR)
        assert added.status_code == 201, added.text
        assert added.json()["id"] == "kembang_sepatu" and added.json()["added"] is True
        assert any(s["id"] == "kembang_sepatu" for s in httpx.get(f"{a}/species").json())  # at once on its worker

        _wait_for(lambda: any(s["id"] == "kembang_sepatu" for s in httpx.get(f"{b}/species").json()))
        shown = httpx.get(f"{b}/species/kembang_sepatu/photo")
        assert (
            shown.status_code == 200
            and shown.headers["content-type"] == "image/jpeg"
            and shown.content[:2] == b"\xff\xd8"
        )
        assert httpx.get(f"{b}/species/kembang_sepatu").json()["famili"] == "Malvaceae"

        for voter in ("10.9.0.1", "10.9.0.2"):  # two visitors agree on the new species
            sent = httpx.post(
                f"{b}/feedback",
                files={"file": ("x.jpg", photo, "image/jpeg")},
                data=vote,
                headers={"X-Forwarded-For": voter},
            )
            assert sent.status_code == 201, sent.text
        other = httpx.post(f"{a}/feedback", files={"file": ("y.jpg", photo_bytes("sintetis_ungu", 902), "image/jpeg")})
        decided = httpx.post(
            f"{b}/review/decisions",
            json={"sha256": other.json()["id"], "decision": "label", "label": "kembang_sepatu"},
            headers=CURATOR,
        )
        assert decided.status_code == 201, decided.text
    finally:
        for server in servers:
            server.stop()

    merged = runner.invoke(app, ["merge"], env={"BUNGA_DATA_DIR": str(data)})
    assert merged.exit_code == 0, merged.output
    assert "species added by curators: kembang_sepatu" in merged.output
    dataset = tmp_path / "Dataset Bunga"
    manifest = json.loads((dataset / "manifest.json").read_text())
    assert manifest["species_added"] == ["kembang_sepatu"] and manifest["classes_photos"]["kembang_sepatu"] == 2
    written = load_catalog(dataset / "species.yaml")
    assert written.entries["kembang_sepatu"].latin == "Hibiscus rosa-sinensis"
    assert set(load_catalog().entries) < set(written.entries)
    kinds = {f["path"]: f["kind"] for f in manifest["files"]}
    assert [k for p, k in kinds.items() if p.startswith("feedback/catalog/")] == ["catalog"]

    edited = runner.invoke(
        app,
        ["catalog", "add", "kembang_sepatu", "--nama", "Bunga raya", "--curator", "budi"],
        env={"BUNGA_DATA_DIR": str(data)},
    )
    assert edited.exit_code == 0, edited.output
    listed = runner.invoke(app, ["catalog", "list"], env={"BUNGA_DATA_DIR": str(data)})
    # the later edit changed the name only: the family it did not give is kept
    assert "kembang_sepatu\tBunga raya\tMalvaceae (added by a curator)" in listed.output
    again = runner.invoke(app, ["merge"], env={"BUNGA_DATA_DIR": str(data)})
    assert again.exit_code == 0 and "(changed)" in again.output, again.output
    after = json.loads((dataset / "manifest.json").read_text())
    assert after["dataset_digest"] != manifest["dataset_digest"]
    assert after["photos_digest"] == manifest["photos_digest"]  # only the catalogue changed
    assert yaml.safe_load((dataset / "species.yaml").read_text())["kembang_sepatu"]["nama"] == "Bunga raya"


def test_catalog_add_errors_are_one_line(tmp_path: Path) -> None:
    bad = runner.invoke(app, ["catalog", "add", "9lives", "--nama", "x"])
    assert bad.exit_code == 1 and "not usable as a class" in bad.output and "Traceback" not in bad.output
    (tmp_path / "not.jpg").write_bytes(b"plain text")
    photo = runner.invoke(app, ["catalog", "add", "melati", "--nama", "Melati", "--photo", str(tmp_path / "not.jpg")])
    assert photo.exit_code == 1 and "--photo" in photo.output and "Traceback" not in photo.output
