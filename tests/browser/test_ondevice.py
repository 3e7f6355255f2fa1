"""The served graphs run in Debian's Chromium by onnxruntime-web (built by `make web`), against the
server's own sessions: fed the server's preprocessed tensors, the photo probabilities agree within
1e-3; through the browser's own decoding and resizing, the top species and band agree on >= 98 % of
photos; the measurement model's probabilities agree within 1e-6. The page keeps one verified graph per
kind: a new one replaces it only whole, and it identifies from a cold start with the server gone."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import sqlite3
from pathlib import Path

import httpx
import numpy as np
import pytest

from bunga.imaging import photo_tensor
from bunga.models.bands import band
from bunga.predict import Predictor
from tests.browser.test_page import ARTIFACTS, browser, open_page  # noqa: F401  (the fixture)
from tests.conftest import SHIPPED_PHOTOS, LiveServer, run_in_workspace
from tests.helpers import photo_bytes

pytestmark = pytest.mark.browser
STATIC = Path(__file__).resolve().parents[2] / "src" / "bunga" / "serving" / "static"
STYLES = ("sintetis_merah", "sintetis_kuning", "sintetis_ungu", "sintetis_putih")
FIELDS = ("sepal_length", "sepal_width", "petal_length", "petal_width")
SETOSA = (5.1, 3.5, 1.4, 0.2)

FEED_TENSOR = """async ([b64, n]) => {
  const raw = atob(b64);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i += 1) bytes[i] = raw.charCodeAt(i);
  const rules = await (await fetch("/models/photos/rules")).json();
  const o = await bungaOnDevice.scoreTensor(new Float32Array(bytes.buffer), n);
  const answer = (i) =>
    bungaOnDevice.answer(o.probabilities[i], o.similarity[i], o.imagenet[i], rules, {}, o.logits[i]);
  return o.probabilities.map((p, i) => [p, answer(i).band]);
}"""
FEED_OBSERVATION = """async ([b64, n]) => {
  const raw = atob(b64);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i += 1) bytes[i] = raw.charCodeAt(i);
  const rules = await (await fetch("/models/photos/rules")).json();
  const o = await bungaOnDevice.scoreTensor(new Float32Array(bytes.buffer), n);
  const photos = o.probabilities.map((p, i) => ({
    probabilities: p, similarity: o.similarity[i], imagenet: o.imagenet[i], logits: o.logits[i],
  }));
  const a = bungaOnDevice.observe(photos, rules, {});
  return [a.band, a.top[0].species, a.top[0].probability, a.photos_used];
}"""
FEED_PHOTO = """async (b64) => {
  const raw = atob(b64);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i += 1) bytes[i] = raw.charCodeAt(i);
  const rules = await (await fetch("/models/photos/rules")).json();
  const o = await bungaOnDevice.scoreImage(new Blob([bytes], { type: "image/jpeg" }));
  const a = bungaOnDevice.answer(o.probabilities[0], o.similarity[0], o.imagenet[0], rules, {}, o.logits[0]);
  return [o.probabilities[0], a.band, a.top[0].species];
}"""


@pytest.fixture(scope="module")
def shipped_model(tmp_path_factory: pytest.TempPathFactory, trained_workspace: Path) -> Path:
    """A photo model trained on the shipped real photos (all but every fifth of each species, kept for
    the parity set), exported to ``<dir>/bunga-model`` beside the generated data's measurement model."""
    ws = tmp_path_factory.mktemp("shipped")
    for folder in sorted(p for p in SHIPPED_PHOTOS.iterdir() if p.is_dir()):
        (ws / "collected_data" / "foto" / folder.name).mkdir(parents=True)
        for n, photo in enumerate(sorted(folder.glob("*.jpg"))):
            if n % 5 == 0:
                continue  # every fifth stays out of training: the parity set
            shutil.copy(photo, ws / "collected_data" / "foto" / folder.name / photo.name)
    run_in_workspace(ws, ["pipeline", "--kind", "photos"], ["export", "--kind", "photos"])
    shutil.copytree(trained_workspace / "bunga-model" / "measurements", ws / "bunga-model" / "measurements")
    return ws / "bunga-model"


FEED_ROWS = """async (rows) => {
  await bungaOnDevice.load("measurements");
  try {
    const found = await bungaOnDevice.scoreMeasurements(rows);
    const rules = bungaOnDevice.rules("measurements");
    return found.map((p) => [p, bungaOnDevice.answerMeasurements(p, rules).species]);
  } catch (err) {
    return err.message;
  }
}"""
EMPTIED = """async (seconds) => {
  for (let i = 0; i < 10 * seconds; i += 1) {
    if ((await bungaOutbox.count()) === 0 && (await bungaOutbox.answersWaiting()) === 0) return true;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return false;
}"""


def _photos() -> list[bytes]:
    """40 shipped photos the model never saw (every species, their own sizes) and 10 generated ones
    at sizes the browser must resample, up, down, and down after Pillow's JPEG draft (480 and 1800 px:
    the draft the browser approximates)."""
    held = [photo for folder in sorted(SHIPPED_PHOTOS.iterdir()) for photo in sorted(folder.glob("*.jpg"))[::5]]
    real = [p.read_bytes() for p in held[:40]]
    return real + [photo_bytes(STYLES[i % 4], 1000 + i, size=(160, 300, 480, 1800)[i % 4]) for i in range(10)]


def test_the_browser_answers_like_the_server(
    browser: object,  # noqa: F811
    shipped_model: Path,
    tmp_path: Path,
) -> None:
    assert (STATIC / "ort" / "ort-wasm-simd-threaded.wasm").is_file(), "run `make web` (make test does)"
    predictor = Predictor(shipped_model / "photos")
    server = LiveServer({"BUNGA_DATA_DIR": str(tmp_path / "d")}, ["--model-dir", str(shipped_model)], tmp_path)
    try:
        page, errors = open_page(browser, server.url + "/")
        loaded = page.evaluate("async () => await bungaOnDevice.load()")
        assert loaded["sha256"] == predictor.card.onnx_sha256 and loaded["size"] == predictor.input_size
        # COOP + COEP make the page cross-origin isolated: the runtime may use the phone's second core
        assert page.evaluate("[self.crossOriginIsolated, ort.env.wasm.numThreads]") == [True, 2]

        photos = _photos()
        tensors = np.stack([photo_tensor(p, 10**8, size=predictor.input_size) for p in photos]).astype(np.float32)
        scores = predictor.score_photos(tensors)
        expected = scores.probabilities
        sure = predictor.card.bands.sure_threshold if predictor.card.bands else None
        assert predictor.card.bands is not None and predictor.card.bands.score == "margin"  # the phone's rule too
        bands = [
            band(bool(k), bool(nf), float(v), sure)
            for k, nf, v in zip(scores.recognised, scores.not_flower, predictor.sure_values(scores), strict=True)
        ]
        got = []
        for start in range(0, len(photos), 10):
            chunk = tensors[start : start + 10]
            got.extend(page.evaluate(FEED_TENSOR, [base64.b64encode(chunk.tobytes()).decode(), len(chunk)]))
        # fed the server's own tensors: the same probabilities, abstention, not-a-flower rule and bands
        assert np.abs(np.asarray([g[0] for g in got]) - expected).max() <= 1e-3
        assert [g[1] for g in got] == bands
        assert len(set(bands)) >= 2, bands  # the set exercises more than one band

        # several photos of one plant, combined on the phone as /predict/observation combines them
        assert set(predictor.card.observation) == {"2", "3"}
        groups = [[i, i + 1] for i in range(0, 40, 4)] + [[i, i + 4, i + 8] for i in range(1, 13, 4)] + [[40, 44]]
        for group in groups:
            chunk = tensors[group]
            combined, how = predictor.observation_answer(predictor.score_photos(chunk))
            phone_band, top, probability, used = page.evaluate(
                FEED_OBSERVATION, [base64.b64encode(chunk.tobytes()).decode(), len(chunk)]
            )
            assert (phone_band, top, used) == (combined.band, combined.top[0][0], len(how.used)), group
            assert abs(probability - combined.top[0][1]) <= 1e-3

        served = [
            httpx.post(f"{server.url}/predict/image", files={"file": ("p.jpg", p, "image/jpeg")}).json()["results"][0]
            for p in photos
        ]
        phone = [page.evaluate(FEED_PHOTO, base64.b64encode(p).decode()) for p in photos]
        agree = [(b, s) == (r["band"], r["top"][0]["species"]) for (_, b, s), r in zip(phone, served, strict=True)]
        per_photo = np.abs(np.asarray([p[0] for p in phone]) - expected).max(axis=1)
        print(f"parity: band and top {np.mean(agree):.2f}, within 0.02 {np.mean(per_photo <= 0.02):.2f}, "
              f"largest difference {per_photo.max():.5f}, median {np.median(per_photo):.5f}")  # fmt: skip
        assert float(np.mean(agree)) >= 0.98, [i for i, a in enumerate(agree) if not a]
        # the browser redoes Pillow's draft and resize on its own decode (resample.js): every photo
        assert float(per_photo.max()) <= 0.02, per_photo

        measurer = Predictor(shipped_model / "measurements")
        rows = np.random.default_rng(7).uniform(0.1, 8.0, size=(60, 4)).round(1)
        rows[0] = [100.0, 0.1, 50.0, 0.1]  # the edges /predict accepts
        phone_rows = page.evaluate(FEED_ROWS, rows.tolist())
        assert np.abs(np.asarray([r[0] for r in phone_rows]) - measurer.predict_proba(rows)).max() <= 1e-6
        assert [r[1] for r in phone_rows] == measurer.predict(rows)
        refused = page.evaluate(FEED_ROWS, [[5.1, 3.5, 0.0, 0.2]])
        assert "above 0" in refused, refused
        assert not errors, errors
    finally:
        server.stop()


def test_a_model_the_phone_holds_is_not_sent_again(model_dir: Path, tmp_path: Path) -> None:
    server = LiveServer({"BUNGA_DATA_DIR": str(tmp_path / "d")}, ["--model-dir", str(model_dir)], tmp_path)
    try:
        first = httpx.get(f"{server.url}/models/photos/model.onnx")
        sha = Predictor(model_dir / "photos").card.onnx_sha256
        assert first.status_code == 200 and first.headers["etag"] == f'"{sha}"'
        assert hashlib.sha256(first.content).hexdigest() == sha
        again = httpx.get(f"{server.url}/models/photos/model.onnx", headers={"If-None-Match": f'"{sha}"'})
        assert again.status_code == 304 and again.content == b""
        wasm = httpx.get(f"{server.url}/static/ort/ort-wasm-simd-threaded.wasm")  # httpx asks for gzip
        assert wasm.headers["content-type"] == "application/wasm" and wasm.headers["content-encoding"] == "gzip"
        assert int(wasm.headers["content-length"]) < 0.3 * len(wasm.content)
        assert wasm.content == (STATIC / "ort" / "ort-wasm-simd-threaded.wasm").read_bytes()
        plain = httpx.get(f"{server.url}/static/ort/ort.wasm.min.js", headers={"Accept-Encoding": "identity"})
        assert "content-encoding" not in plain.headers and plain.content.startswith(b"/*")
        assert httpx.get(f"{server.url}/static/ort/secret.txt").status_code == 404
        graph = httpx.get(f"{server.url}/models/measurements/model.onnx")
        rules = httpx.get(f"{server.url}/models/measurements/rules").json()
        assert hashlib.sha256(graph.content).hexdigest() == rules["sha256"] == graph.headers["etag"].strip('"')
        assert rules["features"] == ["sepal_length", "sepal_width", "petal_length", "petal_width"]
        assert rules["range"] == {"above": 0.0, "max": 100.0} and rules["classes"]
        assert httpx.get(f"{server.url}/models/other/model.onnx").status_code == 422
    finally:
        server.stop()


def test_installable_and_identifies_from_a_cold_start_with_the_server_gone(
    browser: object,  # noqa: F811
    shipped_model: Path,
    tmp_path: Path,
) -> None:
    """One online visit keeps the model; then, with the server stopped (Playwright's offline mode does
    not cover service workers), a new tab loads the page from the service worker, identifies a photo
    on the phone and shows the species' reference photo. Installability comes from Chromium itself."""
    server = LiveServer({"BUNGA_DATA_DIR": str(tmp_path / "d")}, ["--model-dir", str(shipped_model)], tmp_path)
    try:
        page, errors = open_page(browser, server.url + "/")
        page.evaluate("async () => { await navigator.serviceWorker.ready; return true; }")
        page.reload()  # now controlled by the service worker
        page.click("#keep-offline")
        page.wait_for_selector("#photo-status:has-text('Siap dipakai tanpa sinyal')", timeout=120_000)
        cdp = page.context.new_cdp_session(page)
        assert cdp.send("Page.getInstallabilityErrors")["installabilityErrors"] == []
        manifest = cdp.send("Page.getAppManifest")
        assert manifest["url"].endswith("/manifest.webmanifest") and not manifest["errors"], manifest
        assert not errors, errors
        page.close()
    finally:
        server.stop()

    cold = browser.new_page()  # type: ignore[attr-defined]
    cold.goto(server.url + "/")  # the server is gone: the service worker answers
    photo = sorted((SHIPPED_PHOTOS / "sunflower").glob("*.jpg"))[0]
    cold.set_input_files("#photo", str(photo))
    assert cold.locator("#keep-offline").is_visible()  # tapped while the kept model is still loading ...
    cold.click("#identify")
    cold.wait_for_selector("#computed:has-text('dihitung di ponsel')", timeout=60_000)  # ... the answer waits for it
    assert "Bunga matahari" in cold.locator("#photo-result").inner_text()
    cold.wait_for_selector("#photo-result figure.reference img")
    cold.wait_for_function("document.querySelector('#photo-result figure.reference img').naturalWidth > 0")
    ARTIFACTS.mkdir(exist_ok=True)
    cold.screenshot(path=str(ARTIFACTS / "page-offline.png"), full_page=True)
    # not sure: a second photo of the same plant, combined on the phone as the server would
    second = sorted((SHIPPED_PHOTOS / "sunflower").glob("*.jpg"))[5]
    assert cold.locator("#more-photos").is_visible()
    cold.set_input_files("#another", str(second))
    cold.wait_for_selector("#observation:has-text('Jawaban dari 2 foto')", timeout=60_000)
    assert "dihitung di ponsel" in cold.locator("#computed").inner_text()

    cold.click("#confirm")  # feedback without signal: kept on the phone
    cold.wait_for_selector("#feedback-status:has-text('masukan disimpan di ponsel')")
    assert cold.evaluate("async () => await bungaOutbox.count()") == 1

    cold.click("#tab-measure")  # the measurement model runs on the phone too
    for field, value in zip(FIELDS, SETOSA, strict=True):
        cold.fill(f"#{field}", str(value))
    cold.click("#measure-form button[type=submit]")
    cold.wait_for_selector("#measure-computed:has-text('dihitung di ponsel')", timeout=60_000)
    assert "setosa" in cold.locator("#measure-result").inner_text().lower()
    # for the prediction log: the photo alone, the plant's two photos as one record, the measurements
    assert cold.evaluate("async () => await bungaOutbox.answersWaiting()") == 3
    inbox = tmp_path / "d" / "feedback" / "photos"
    assert not list(inbox.glob("*.json"))
    back = LiveServer(
        {"BUNGA_DATA_DIR": str(tmp_path / "d")}, ["--model-dir", str(shipped_model)], tmp_path, server.port
    )
    try:
        # the server came back while the page stayed open and its network never went away (no "online"
        # event): the page's retry timer sends the queue, no reload needed
        assert cold.evaluate(EMPTIED, 90), "the queue was not sent while the page stayed open"
        cold.close()
        again = browser.new_page()  # type: ignore[attr-defined]
        again.goto(server.url + "/")  # the next visit has nothing left to send
        assert again.evaluate(EMPTIED, 5)
        again.close()
        records = [json.loads(p.read_text()) for p in inbox.glob("*.json")]
        assert [(r["label"], r["sha256"]) for r in records] == [
            ("sunflower", hashlib.sha256(photo.read_bytes()).hexdigest())
        ]
    finally:
        back.stop()  # its prediction log is written out on the way down
    with sqlite3.connect(tmp_path / "bunga-monitor.db") as db:
        logged = db.execute(
            "SELECT kind, predicted, photo_sha256, f1, observation_photos FROM predictions WHERE arm = 'phone' "
            "ORDER BY kind, observation_photos"
        ).fetchall()
    sha = hashlib.sha256(photo.read_bytes()).hexdigest()
    assert logged == [
        ("measurements", "setosa", None, SETOSA[0], None),
        ("photos", "sunflower", sha, None, None),
        ("photos", "sunflower", sha, None, 2),  # the observation: one record, its first photo named
    ]


KEPT = """async () => {
  const cache = await caches.open("bunga-models");
  const graph = await cache.match("/models/photos/model.onnx");
  const keys = (await cache.keys()).map((r) => new URL(r.url).pathname + new URL(r.url).search).sort();
  const bytes = graph ? new Uint8Array(await graph.arrayBuffer()) : new Uint8Array();
  return { keys, sha: graph ? graph.headers.get("X-Sha256") : null, bytes: await bungaOnDevice.sha256Hex(bytes) };
}"""


def test_a_new_model_replaces_the_kept_one_only_whole(
    browser: object,  # noqa: F811
    shipped_model: Path,
    model_dir: Path,
    tmp_path: Path,
) -> None:
    """The phone keeps one verified graph per kind. When the server serves another model, a download
    that does not match its sha256 (here the served file is cut short) leaves the kept model in place
    and in use; the whole download replaces it (the old one and its rules are gone); a check with
    nothing new fetches only the rules."""
    first = tmp_path / "first"
    shutil.copytree(shipped_model, first)
    env = {"BUNGA_DATA_DIR": str(tmp_path / "d")}
    server = LiveServer(env, ["--model-dir", str(first)], tmp_path)
    old_sha = Predictor(first / "photos").card.onnx_sha256
    new_sha = Predictor(model_dir / "photos").card.onnx_sha256
    assert old_sha != new_sha
    try:
        page, errors = open_page(browser, server.url + "/")
        page.click("#keep-offline")
        page.wait_for_selector("#photo-status:has-text('Siap dipakai tanpa sinyal')", timeout=120_000)
        kept = page.evaluate(KEPT)
        assert kept["sha"] == kept["bytes"] == old_sha, kept
        requested: list[str] = []
        page.on("request", lambda r: requested.append(r.url))
        assert page.evaluate("async () => (await bungaOnDevice.load('photos', { keepIt: true })).sha256") == old_sha
        assert not [u for u in requested if u.endswith("model.onnx")], requested  # nothing new: rules only
        assert any(u.endswith("/models/photos/rules") for u in requested), requested
        page.close()
    finally:
        server.stop()

    server = LiveServer(env, ["--model-dir", str(model_dir)], tmp_path, server.port)  # same origin, new model
    graph = model_dir / "photos" / "model.onnx"
    whole = graph.read_bytes()
    try:
        graph.write_bytes(whole[: len(whole) // 2])  # after the server checked it: served cut short
        page, errors = open_page(browser, server.url + "/")
        loaded = page.evaluate("async () => await bungaOnDevice.load('photos', { keepIt: true })")
        assert loaded["sha256"] == old_sha and "does not match its sha256" in loaded["problem"], loaded
        assert page.evaluate(KEPT)["sha"] == old_sha

        graph.write_bytes(whole)
        loaded = page.evaluate("async () => await bungaOnDevice.load('photos', { keepIt: true })")
        assert loaded["sha256"] == new_sha and loaded["problem"] is None, loaded
        kept = page.evaluate(KEPT)
        assert kept["sha"] == kept["bytes"] == new_sha, kept
        assert f"/models/photos/rules?sha256={old_sha}" not in kept["keys"], kept  # one model per kind
        assert sum(k.startswith("/models/photos/") for k in kept["keys"]) == 2, kept  # the graph, its rules
        assert not errors, errors
    finally:
        server.stop()
