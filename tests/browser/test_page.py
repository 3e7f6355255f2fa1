"""The visitors' page in Debian's Chromium, driven by Playwright, against a real server."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, TEST_CREDIT_LICENCE, TEST_CREDIT_LINK, LiveServer
from tests.helpers import missing, photo_bytes

pytestmark = pytest.mark.browser
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]


@pytest.fixture
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        missing("Debian's chromium (/usr/bin/chromium)")
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="bunga-chromium-")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            profile,
            executable_path=str(CHROMIUM),
            headless=True,
            args=FLAGS,
            viewport={"width": 412, "height": 900},
        )
        yield context
        context.close()
    shutil.rmtree(profile, ignore_errors=True)


def open_page(browser: object, url: str) -> tuple[Any, list[str]]:
    """A new tab at ``url`` and the list its console errors are collected into."""
    page: Any = browser.new_page()  # type: ignore[attr-defined]
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(url)
    return page, errors


def set_card(model_dir: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Edit the served photo model's card before its server starts."""
    card_path = model_dir / "photos" / "bunga.json"
    card = json.loads(card_path.read_text())
    change(card)
    card_path.write_text(json.dumps(card))


@pytest.fixture
def sure_server(model_dir: Path, tmp_path: Path) -> Iterator[LiveServer]:
    """A server whose photo model answers every recognised photo as sure (sure threshold 0)."""
    set_card(model_dir, lambda card: card["bands"].update(sure_threshold=0.0))
    env = {"BUNGA_DATA_DIR": str(tmp_path / "collected_data"), "BUNGA_FEEDBACK_RATE_PER_MIN": "0"}
    server = LiveServer(env, ["--model-dir", str(model_dir)], tmp_path)
    yield server
    server.stop()


def test_visitor_identifies_a_photo_and_sends_feedback(
    browser: object, sure_server: LiveServer, tmp_path: Path, synthetic_photos: Path
) -> None:
    live_server = sure_server
    page = browser.new_page()  # type: ignore[attr-defined]
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(live_server.url)
    assert page.locator("h1").inner_text() == "Kenali bunga di Kebun Raya ITERA"
    photo = next((synthetic_photos / "sintetis_merah").glob("*.jpg"))
    page.set_input_files("#photo", str(photo))
    page.click("#identify")
    page.wait_for_selector("#photo-result .card.top", timeout=30_000)
    # a sure answer: the name, large, and no percentage unless the visitor opens the details
    assert page.locator("#photo-result .card.top h2.answer-name").inner_text() == "Bunga sintetis merah"
    assert "%" not in page.locator("#photo-result").inner_text()
    page.click("#photo-result details summary")
    assert (
        page.locator("#photo-result details meter").count() == 3 and "%" in page.locator("#photo-result").inner_text()
    )
    # the page scrolled to the answer: it starts inside the phone's screen
    assert 0 <= page.evaluate("document.querySelector('#photo-result').getBoundingClientRect().top") < 900
    # each card shows the model's reference photo of the species, credited, inside the card at phone width
    top_ref = page.locator("#photo-result .card.top figure.reference")
    page.wait_for_function("document.querySelector('#photo-result .card.top img')?.naturalWidth > 0")
    assert top_ref.locator("img").get_attribute("alt") == "Foto contoh: Bunga sintetis merah"
    assert top_ref.locator("figcaption").inner_text().startswith(f"Foto: {TEST_CREDIT_LICENCE}")
    assert top_ref.locator("a").get_attribute("href").startswith(f"{TEST_CREDIT_LINK}sintetis_merah_")
    card_box, img_box = page.locator("#photo-result .card.top").bounding_box(), top_ref.locator("img").bounding_box()
    assert card_box["x"] <= img_box["x"] and img_box["x"] + img_box["width"] <= card_box["x"] + card_box["width"]
    assert page.locator("#photo-result .card figure.reference").count() == 1
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "page-photo-result.png"), full_page=True)
    page.click("#confirm")
    page.wait_for_selector("#feedback-status:has-text('Terima kasih')")
    stored = list((tmp_path / "collected_data" / "feedback" / "photos").glob("*.json"))
    assert len(stored) == 1 and '"label": "sintetis_merah"' in stored[0].read_text()
    # English toggle, then the measurement tab
    page.click("#lang")
    assert page.locator("h1").inner_text() == "Identify flowers at Kebun Raya ITERA"
    assert top_ref.locator("figcaption").inner_text().startswith(f"Photo: {TEST_CREDIT_LICENCE}")
    assert top_ref.locator("img").get_attribute("alt") == "Reference photo: Synthetic red flower"
    assert page.locator("#photo-result .card.top h2").inner_text() == "Synthetic red flower"  # English names
    page.click("#tab-measure")
    for field, value in {
        "sepal_length": "5.1",
        "sepal_width": "3.5",
        "petal_length": "1.4",
        "petal_width": "0.2",
    }.items():
        page.fill(f"#{field}", value)
    page.click("#measure-form button[type=submit]")
    page.wait_for_selector("#measure-result .card.top")
    assert (
        page.locator("#measure-result .card.top h2").inner_text() == "Bristle-pointed iris"
    )  # English mode: the English name
    page.screenshot(path=str(ARTIFACTS / "page-measurements.png"), full_page=True)
    assert not errors, errors


@contextmanager
def answered_page(
    browser: object, model_dir: Path, tmp_path: Path, change: Callable[[dict[str, Any]], None], shown: str, style: str
) -> Iterator[Any]:
    """The page after identifying a ``style`` photo, served by a model whose card ``change`` edited,
    once ``shown`` (a selector) is on it."""
    set_card(model_dir, change)
    server = LiveServer({"BUNGA_DATA_DIR": str(tmp_path / "d")}, ["--model-dir", str(model_dir)], tmp_path)
    try:
        page = browser.new_page()  # type: ignore[attr-defined]
        page.goto(server.url)
        upload = tmp_path / "x.jpg"
        upload.write_bytes(photo_bytes(style, 4))
        page.set_input_files("#photo", str(upload))
        page.click("#identify")
        page.wait_for_selector(shown)
        yield page
    finally:
        server.stop()


def refusing_page(browser: object, model_dir: Path, tmp_path: Path, section: str) -> Any:
    """The page served by a model whose card's ``section`` threshold refuses every photo
    (``abstention``: an unknown flower; ``not_flower``: not a flower)."""
    refuse = lambda card: card[section].update(threshold=-1.0)  # noqa: E731
    return answered_page(browser, model_dir, tmp_path, refuse, "#photo-result .unknown", "sintetis_putih")


def test_page_says_when_a_flower_is_not_recognised(browser: object, model_dir: Path, tmp_path: Path) -> None:
    with refusing_page(browser, model_dir, tmp_path, "abstention") as page:
        assert page.locator("#photo-result .unknown").inner_text() == "Bunga tidak dikenali"
        # suggestions only: no species card, no confidence bar, no percentage
        assert page.locator("#photo-result .card").count() == 0
        assert page.locator("#photo-result meter").count() == 0
        assert page.locator("#photo-result .suggestions li").count() == 3
        assert page.locator("#photo-result .suggestions figure.reference img").count() == 3
        assert "%" not in page.locator("#photo-result").inner_text()
        page.screenshot(path=str(ARTIFACTS / "page-not-recognised.png"), full_page=True)
        page.click("#lang")
        page.click("#identify")
        page.wait_for_function(
            "document.querySelector('#photo-result .unknown')?.innerText === 'Flower not recognised'"
        )
        assert page.locator("#photo-result .suggestions li").count() == 3


def test_page_says_when_a_photo_is_not_a_flower(browser: object, model_dir: Path, tmp_path: Path) -> None:
    with refusing_page(browser, model_dir, tmp_path, "not_flower") as page:
        assert page.locator("#photo-result .unknown").inner_text() == "Foto ini tidak tampak seperti bunga"
        assert page.locator("#photo-result .card, #photo-result meter, #photo-result .suggestions").count() == 0
        page.screenshot(path=str(ARTIFACTS / "page-not-a-flower.png"), full_page=True)
        page.click("#confirm")  # "yes, right": a vote that the photo shows no flower, not "don't know"
        page.wait_for_selector("#feedback-status:has-text('Terima kasih')")
        (record,) = (tmp_path / "d" / "feedback" / "photos").glob("*.json")
        assert json.loads(record.read_text())["label"] == "not_a_flower"
        page.click("#lang")
        page.click("#identify")
        page.wait_for_function(
            "document.querySelector('#photo-result .unknown')?.innerText === 'This photo does not look like a flower'"
        )


def test_page_says_when_it_is_not_sure(browser: object, model_dir: Path, tmp_path: Path) -> None:
    """A recognised photo below the sure threshold: worded as a guess, the candidates in order in
    words ("paling mungkin", "mungkin juga"), no percentage, never one name stated as the answer."""
    never_sure = lambda card: card["bands"].update(sure_threshold=1e6)  # noqa: E731  (no margin reaches it)
    with answered_page(browser, model_dir, tmp_path, never_sure, "#photo-result .possible", "sintetis_merah") as page:
        assert page.locator("#photo-result .possible").inner_text().startswith("Belum pasti")
        assert page.locator("#photo-result .card.top").count() == 0  # no name stated as the answer
        cards = page.locator("#photo-result .card")
        assert 1 <= cards.count() <= 3 and "%" not in page.locator("#photo-result").inner_text()
        assert cards.first.locator("h3").inner_text() == "Bunga sintetis merah"
        words = [cards.nth(i).locator(".likelihood").inner_text().lower() for i in range(cards.count())]
        assert words == ["paling mungkin"] + ["mungkin juga"] * (cards.count() - 1), words
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "page-possible.png"), full_page=True)
        page.click("#lang")
        page.click("#identify")
        page.wait_for_function("document.querySelector('#photo-result .possible')?.innerText.startsWith('Not sure')")


def _never_sure(card: dict[str, Any]) -> None:
    card["bands"].update(sure_threshold=1e6)
    for fit in card["observation"].values():
        fit.update(sure_threshold=1e6)


def test_another_photo_of_the_plant_is_combined_and_sent_together(
    browser: object, model_dir: Path, tmp_path: Path
) -> None:
    """Not sure: the visitor adds another photo of the same plant; the page answers both as one
    observation, says how many photos it used, lets one be removed, and sends feedback for both."""
    with answered_page(browser, model_dir, tmp_path, _never_sure, "#photo-result .possible", "sintetis_merah") as page:
        assert page.locator("#more-photos").is_visible()
        assert page.locator("#more-photos label").inner_text() == "Tambahkan foto lain dari tanaman ini"
        second = tmp_path / "second.jpg"
        second.write_bytes(photo_bytes("sintetis_merah", 5))
        page.set_input_files("#another", str(second))
        page.wait_for_selector("#observation:has-text('Jawaban dari 2 foto')")
        assert page.locator("#thumbs li").count() == 2
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "page-observation.png"), full_page=True)
        page.select_option("#correct", "sintetis_merah")
        page.click("#send-feedback")
        page.wait_for_selector("#feedback-status:has-text('Terima kasih')")
        records = [json.loads(r.read_text()) for r in (tmp_path / "d" / "feedback" / "photos").glob("*.json")]
        assert len(records) == 2 and len({r["observation_id"] for r in records}) == 1  # one plant, one label
        assert all(r["label"] == "sintetis_merah" for r in records)
        page.click("#lang")
        page.wait_for_selector("#observation:has-text('Answer from 2 photos')")
        page.locator("#thumbs li button").nth(1).click()  # remove the second photo: the first alone again
        page.wait_for_selector("#observation", state="detached")  # polled by Playwright, not eval (the CSP)
        page.wait_for_selector("#photo-result .possible")
        assert page.locator("#thumbs li").count() == 0


def test_the_correction_list_starts_afresh_offers_the_catalogue_and_works_offline(
    browser: object, sure_server: LiveServer, synthetic_photos: Path
) -> None:
    """The visitor's correction list: the served species first, then the whole catalogue (a species the
    model was never taught, Kembang sepatu, too); a new photo starts with no choice; and after one
    visit the list is there with the server gone."""
    page, errors = open_page(browser, sure_server.url)
    photos = sorted((synthetic_photos / "sintetis_merah").glob("*.jpg"))[:2]
    page.set_input_files("#photo", str(photos[0]))
    page.click("#identify")
    page.wait_for_selector("#feedback-form:not([hidden])")
    options = page.locator("#correct option").evaluate_all("(os) => os.map((o) => o.value)")
    assert options[0] == "" and "hibiscus_rosa_sinensis" in options and "sintetis_merah" in options[:6]
    page.select_option("#correct", "hibiscus_rosa_sinensis")
    page.set_input_files("#photo", str(photos[1]))  # the next photo: the last choice does not carry over
    assert page.locator("#correct").input_value() == "" and page.locator("#feedback-form").is_hidden()
    page.evaluate("async () => { await navigator.serviceWorker.ready; return true; }")
    assert not errors, errors
    page.close()
    sure_server.stop()
    offline = browser.new_page()  # type: ignore[attr-defined]
    offline.goto(sure_server.url)  # the service worker answers the page; the list comes from the phone
    offline.wait_for_function("document.querySelectorAll('#correct option').length > 5")
    assert "hibiscus_rosa_sinensis" in offline.locator("#correct option").evaluate_all("(os) => os.map((o) => o.value)")
