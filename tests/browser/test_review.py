"""The staff review page in Debian's Chromium: a curator signs in with their token and decides 30
visitors' photos by keyboard; the next merge holds exactly the accepted ones with the chosen labels."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect
from typer.testing import CliRunner

from bunga.cli import app
from tests.browser.test_page import ARTIFACTS, browser, open_page  # noqa: F401  (the fixture)
from tests.conftest import LiveServer
from tests.helpers import photo_bytes

pytestmark = pytest.mark.browser
TOKEN = "curator-token-for-the-tests-0001"


def test_a_curator_reviews_30_photos_by_keyboard(browser: object, model_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    data = tmp_path / "collected_data"
    curators = json.dumps({"ani": hashlib.sha256(TOKEN.encode()).hexdigest()})
    env = {"BUNGA_DATA_DIR": str(data), "BUNGA_CURATORS": curators, "BUNGA_FEEDBACK_RATE_PER_MIN": "0"}
    server = LiveServer(env, ["--model-dir", str(model_dir)], tmp_path)
    try:
        for i in range(30):  # 30 visitors, one photo each: one vote is not enough, a curator decides
            sent = httpx.post(
                f"{server.url}/feedback",
                files={"file": ("x.jpg", photo_bytes("sintetis_merah", 300 + i), "image/jpeg")},
                data={"label": "sintetis_merah", "predicted": "sintetis_merah", "band": "possible"},
                headers={"X-Forwarded-For": f"10.9.0.{i}"},
            )
            assert sent.status_code == 201
        page, errors = open_page(browser, f"{server.url}/review")  # phone width: the fixture's viewport
        page.fill("#token", TOKEN)
        page.click("#signin button[type=submit]")
        page.wait_for_selector("#item:not([hidden])")
        assert page.locator("#progress").inner_text() == "30 tersisa"
        assert "Bunga sintetis merah" in page.locator("#proposed").inner_text()
        assert page.locator("#answer").inner_text().startswith("Model: ")  # the server's own answer ...
        assert "(Belum pasti)" in page.locator("#claimed").inner_text()  # ... and, marked, what the page claimed
        page.locator("#species button").nth(1).wait_for()  # the photo species, each with a key
        keyed = min(9, page.locator("#species button").count())
        ids = [page.locator("#species button").nth(i).get_attribute("data-species") for i in range(keyed)]
        pick = next(i for i, s in enumerate(ids) if s and s != "sintetis_merah")  # another species, by its number
        other = ids[pick]
        page.wait_for_function("document.querySelector('#photo').naturalWidth > 0")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "page-review.png"), full_page=True)
        order = httpx.get(f"{server.url}/review/queue", headers={"Authorization": f"Bearer {TOKEN}"}).json()
        assert page.locator("#item").get_attribute("data-sha") == order[0]["sha256"]  # the page's order
        chosen: dict[str, str | None] = {}
        for n, entry in enumerate(order):  # one key per photo, typed without waiting: Enter accepts,
            # N is "not a flower", a digit picks another species; keys queue up while decisions save
            key, label = ("Enter", "sintetis_merah") if n < 20 else ("n", None) if n < 25 else (str(pick + 1), other)
            page.keyboard.press(key)
            chosen[entry["sha256"]] = label
        page.wait_for_selector("#empty:not([hidden])")
        assert not errors, errors
        decided = httpx.get(
            f"{server.url}/review/queue?decided=true", headers={"Authorization": f"Bearer {TOKEN}"}
        ).json()
        assert len(decided) == 30 and {d["decided_by"] for d in decided} == {"ani"}
    finally:
        server.stop()
    merged = CliRunner().invoke(app, ["merge"], env={"BUNGA_DATA_DIR": str(data)})
    assert merged.exit_code == 0, merged.output
    assert "photos: 30 read = 25 kept + 5 rejected + 0 duplicate + 0 queued" in merged.output
    with (tmp_path / "Dataset Bunga" / "images.csv").open() as handle:
        kept = {row["sha256"]: row["label"] for row in csv.DictReader(handle)}
    assert kept == {sha: label for sha, label in chosen.items() if label is not None}


def test_a_curator_adds_a_species_on_the_page_and_labels_a_photo_with_it(
    browser: object,  # noqa: F811
    model_dir: Path,
    tmp_path: Path,
) -> None:
    data = tmp_path / "collected_data"
    curators = json.dumps({"ani": hashlib.sha256(TOKEN.encode()).hexdigest()})
    env = {"BUNGA_DATA_DIR": str(data), "BUNGA_CURATORS": curators, "BUNGA_FEEDBACK_RATE_PER_MIN": "0"}
    server = LiveServer(env, ["--model-dir", str(model_dir)], tmp_path)
    reference = tmp_path / "ref.jpg"
    reference.write_bytes(photo_bytes("sintetis_putih", 700))
    try:
        sent = httpx.post(
            f"{server.url}/feedback", files={"file": ("x.jpg", photo_bytes("sintetis_putih", 701), "image/jpeg")}
        )
        assert sent.status_code == 201
        page, errors = open_page(browser, f"{server.url}/review")  # phone width: the fixture's viewport
        page.fill("#token", TOKEN)
        page.click("#signin button[type=submit]")
        page.wait_for_selector("#item:not([hidden])")
        page.click("#add-species summary")
        page.fill("#sp-id", "Kembang Sepatu")
        page.fill("#sp-nama", "Kembang sepatu")
        page.fill("#sp-famili", "Malvaceae")
        page.fill("#sp-deskripsi", "Semak berbunga merah; 1 2 3 n r")  # typing keys here decides nothing
        page.set_input_files("#sp-file", str(reference))
        page.click("#species-form button[type=submit]")
        page.wait_for_selector("#status:has-text('Spesies tersimpan: Kembang sepatu (kembang_sepatu)')")
        button = page.locator("#species button[data-species='kembang_sepatu']")
        button.wait_for()
        # a photo species: among the keyed ones, right after the served model's, with its thumbnail
        assert button.inner_text()[0].isdigit(), button.inner_text()
        assert page.locator("#species li:has(button[data-species='kembang_sepatu']) img").count() == 1
        assert page.locator("#species button[data-species='setosa']").count() == 0  # measurement-only: searched
        page.fill("#species-search", "seto")
        page.locator("#species-more button[data-species='setosa']").wait_for()
        assert httpx.get(f"{server.url}/review/queue", headers={"Authorization": f"Bearer {TOKEN}"}).json()
        button.click()
        page.wait_for_selector("#empty:not([hidden])")
        assert not errors, errors
        decided = httpx.get(
            f"{server.url}/review/queue?decided=true", headers={"Authorization": f"Bearer {TOKEN}"}
        ).json()
        assert [(d["decision"], d["decided_label"]) for d in decided] == [("label", "kembang_sepatu")]
        assert httpx.get(f"{server.url}/species/kembang_sepatu/photo").status_code == 200
    finally:
        server.stop()


def test_the_photos_of_one_plant_are_reviewed_together(browser: object, model_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    """A visitor's three photos of one plant wait together: one label labels the plant's photos still
    waiting, a rejection takes one photo only, and the merge keeps the observation id in images.csv."""
    data = tmp_path / "collected_data"
    curators = json.dumps({"ani": hashlib.sha256(TOKEN.encode()).hexdigest()})
    env = {"BUNGA_DATA_DIR": str(data), "BUNGA_CURATORS": curators, "BUNGA_FEEDBACK_RATE_PER_MIN": "0"}
    server = LiveServer(env, ["--model-dir", str(model_dir)], tmp_path)
    plant = [photo_bytes("sintetis_ungu", 700 + i) for i in range(3)]
    try:
        files = [("file", (f"p{i}.jpg", p, "image/jpeg")) for i, p in enumerate(plant)]
        oid = httpx.post(f"{server.url}/predict/observation", files=files).json()["observation_id"]
        sent = httpx.post(f"{server.url}/feedback", files=files, data={"label": "", "observation_id": oid})
        assert sent.status_code == 201, sent.text
        alone = {"file": ("a.jpg", photo_bytes("sintetis_merah", 800), "image/jpeg")}
        assert httpx.post(f"{server.url}/feedback", files=alone, data={"label": ""}).status_code == 201
        auth = {"Authorization": f"Bearer {TOKEN}"}
        queue = httpx.get(f"{server.url}/review/queue", headers=auth).json()
        together = [e for e in queue if e["observation_id"] == oid]
        assert len(together) == 3 and all(len(e["observation_photos"]) == 3 for e in together)
        positions = sorted(queue.index(e) for e in together)
        assert positions == list(range(positions[0], positions[0] + 3))  # adjacent in the queue
        page, errors = open_page(browser, f"{server.url}/review")
        page.fill("#token", TOKEN)
        page.click("#signin button[type=submit]")
        page.wait_for_selector("#item:not([hidden])")
        lone_first = page.locator("#item").get_attribute("data-sha") not in {e["sha256"] for e in together}
        if lone_first:
            page.keyboard.press("r")  # the lone photo came first: rejected, it leaves the way
            page.wait_for_selector("#progress:has-text('3 tersisa')")
        page.wait_for_selector("#plant:not([hidden]) #plant-photos li:nth-child(3) img")
        first = page.locator("#item").get_attribute("data-sha")
        page.keyboard.press("r")  # one photo of the plant rejected alone
        # the old row of three stays until the decision is stored: wait for the redrawn row of two
        expect(page.locator("#plant-photos li img")).to_have_count(2)
        page.locator("#species button").first.wait_for()
        page.locator("#species button").nth(1).wait_for()
        keyed = min(9, page.locator("#species button").count())
        ids = [page.locator("#species button").nth(i).get_attribute("data-species") for i in range(keyed)]
        page.keyboard.press(str(ids.index("sintetis_ungu") + 1))  # its key labels the plant
        if lone_first:
            page.wait_for_selector("#empty:not([hidden])")  # one key labelled both remaining photos
        else:
            page.wait_for_selector("#progress:has-text('1 tersisa')")  # one key labelled both; the lone one waits
        assert not errors, errors
        decided = httpx.get(f"{server.url}/review/queue?decided=true", headers=auth).json()
        by_sha = {d["sha256"]: d for d in decided}
        assert by_sha[first]["decision"] == "reject"
        labelled = [d for d in decided if d["observation_id"] == oid and d["decision"] == "label"]
        assert len(labelled) == 2 and len({d["decided_label"] for d in labelled}) == 1
    finally:
        server.stop()
    merged = CliRunner().invoke(app, ["merge"], env={"BUNGA_DATA_DIR": str(data)})
    assert merged.exit_code == 0, merged.output
    with (tmp_path / "Dataset Bunga" / "images.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["observation"] for r in rows] == [oid, oid]  # the plant's two kept photos, grouped in the sheet
