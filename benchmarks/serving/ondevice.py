"""Identification on the phone, measured (#30): what a first visit downloads to work without signal
(with the compression bunga serves, per part), the time to a first answer on a cold start with the
server gone, and the per-photo time in headless Chromium (onnxruntime-web, one WebAssembly thread)
against the server's in-process single-thread time for the same graph. The model is trained on the
shipped photos by `bunga pipeline`, as `make run` does. Run: python -m benchmarks.serving.ondevice"""

from __future__ import annotations

import base64
import io
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from tests.browser.test_page import CHROMIUM, FLAGS  # the project's Chromium flags (closed network)

from benchmarks.garden.pipeline import run_cli
from benchmarks.harness.common import ROOT, WORK, save
from benchmarks.harness.servers import Server, python
from bunga.imaging import photo_tensor
from bunga.predict import Predictor

SHIPPED = ROOT / "collected_data" / "foto_contoh"
PAGE = [
    "/",
    "/static/app.js",
    "/static/resample.js",
    "/static/ondevice.js",
    "/static/outbox.js",
    "/static/style.css",
    "/manifest.webmanifest",
    "/static/icon-192.png",
    "/static/favicon.svg",
    "/sw.js",
]
RUNTIME = [
    "/static/ort/ort.wasm.min.js",
    "/static/ort/ort-wasm-simd-threaded.mjs",
    "/static/ort/ort-wasm-simd-threaded.wasm",
]
PHOTO_TIMES = """async (b64s) => {
  const times = [];
  for (const b64 of b64s) {
    const raw = atob(b64);
    const bytes = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i += 1) bytes[i] = raw.charCodeAt(i);
    const start = performance.now();
    await bungaOnDevice.scoreImage(new Blob([bytes], { type: "image/jpeg" }));
    times.push(performance.now() - start);
  }
  return times;
}"""
GRAPH_TIMES = """async ([n, size]) => {
  const data = new Float32Array(3 * size * size).fill(0.1);
  const times = [];
  for (let i = 0; i < n; i += 1) {
    const start = performance.now();
    await bungaOnDevice.scoreTensor(data, 1);
    times.push(performance.now() - start);
  }
  return times;
}"""


def _train(ws: Path) -> Path:
    shutil.rmtree(ws, ignore_errors=True)
    shutil.copytree(SHIPPED, ws / "collected_data" / "foto_contoh")
    for shard in SHIPPED.parent.glob("*.csv"):  # the shipped measurements: the phone runs that model too
        shutil.copy(shard, ws / "collected_data" / shard.name)
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{ws / 'mlflow.db'}", "BUNGA_ARTIFACT_DIR": str(ws / "mlartifacts")}
    run_cli(["pipeline"], ws, env)
    run_cli(["export"], ws, env)
    return ws / "bunga-model"


def _transferred(url: str, paths: list[str]) -> int:
    """Bytes on the wire for these paths, asking for gzip as a browser does."""
    total = 0
    with httpx.Client(headers={"Accept-Encoding": "gzip"}) as http:
        for path in paths:
            response = http.get(url + path)
            response.raise_for_status()
            total += int(response.headers.get("content-length") or len(response.content))
    return total


def main() -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    ws = WORK / "ondevice"
    models = _train(ws)
    predictor = Predictor(models / "photos", threads=1)
    photos = [p.read_bytes() for p in sorted(SHIPPED.glob("*/*.jpg"))[::10]][:20]
    server_photo = [  # decode + preprocess + graph, one thread, in process
        _ms(lambda p=p: predictor.score_photos(photo_tensor(p, 10**8, size=predictor.input_size)[None])) for p in photos
    ]
    large = _twelve_megapixels(photos[0])
    server_large = [
        _ms(lambda: predictor.score_photos(photo_tensor(large, 10**8, size=predictor.input_size)[None]))
        for _ in range(5)
    ]
    tensor = photo_tensor(photos[0], 10**8, size=predictor.input_size)[None]
    server_graph = [_ms(lambda: predictor.score_photos(tensor)) for _ in range(20)]

    server = Server(
        "ondevice",
        python("-m", "bunga", "serve", "--port", "{port}", "--model-dir", str(models)),
        "/ready",
        env={"BUNGA_DATA_DIR": str(ws / "inbox")},
        cwd=ws,
    )
    rules = httpx.get(server.url + "/models/photos/rules").json()
    references = [r["url"] for r in rules["references"].values()]
    sizes = {
        "page": _transferred(server.url, PAGE),
        "runtime": _transferred(server.url, RUNTIME),
        "photo_graph": _transferred(server.url, ["/models/photos/model.onnx"]),
        "measurement_graph": _transferred(server.url, ["/models/measurements/model.onnx"]),
        "catalogue": _transferred(
            server.url, ["/species", "/model", "/models/photos/rules", "/models/measurements/rules", *references]
        ),
    }
    profile = tempfile.mkdtemp(prefix="bunga-bench-chromium-")
    try:
        with sync_playwright() as p:
            context = p.chromium.launch_persistent_context(
                profile, executable_path=str(CHROMIUM), headless=True, args=FLAGS
            )
            page = context.new_page()
            page.goto(server.url + "/")
            page.evaluate("async () => { await navigator.serviceWorker.ready; return true; }")
            page.reload()
            page.click("#keep-offline")
            page.wait_for_selector("#photo-status:has-text('Siap dipakai tanpa sinyal')", timeout=300_000)
            payload = [base64.b64encode(b).decode() for b in photos]
            browser_photo = page.evaluate(PHOTO_TIMES, payload)
            browser_graph = page.evaluate(GRAPH_TIMES, [20, predictor.input_size])
            threads = page.evaluate("ort.env.wasm.numThreads")
            browser_large = page.evaluate(PHOTO_TIMES, [base64.b64encode(large).decode()] * 5)
            page.close()
            server.stop()
            photo = sorted((SHIPPED / "sunflower").glob("*.jpg"))[0]
            cold = context.new_page()
            start = time.perf_counter()
            cold.goto(server.url + "/")
            cold.wait_for_selector("#keep-offline[hidden]", state="attached", timeout=300_000)
            cold.set_input_files("#photo", str(photo))
            cold.click("#identify")
            cold.wait_for_selector("#computed:has-text('dihitung di ponsel')", timeout=300_000)
            first_answer_s = time.perf_counter() - start
            context.close()
    finally:
        server.stop()
        shutil.rmtree(profile, ignore_errors=True)
    med = statistics.median
    result = {
        "transferred_bytes": sizes,
        "transferred_total_mb": round(sum(sizes.values()) / 1e6, 2),
        "goal_total_mb": 30,
        "cold_offline_first_answer_s": round(first_answer_s, 2),
        "per_photo_ms": {
            "browser_decode_and_graph_median": round(med(browser_photo), 1),
            "browser_graph_median": round(med(browser_graph), 1),
            "server_decode_and_graph_median": round(med(server_photo), 1),
            "server_graph_median": round(med(server_graph), 1),
        },
        "twelve_megapixel_photo_ms": {
            "browser_decode_and_graph_median": round(med(browser_large), 1),
            "server_decode_and_graph_median": round(med(server_large), 1),
            "ratio_browser_over_server": round(med(browser_large) / med(server_large), 2),
        },
        "ratio_graph_browser_over_server": round(med(browser_graph) / med(server_graph), 2),
        "ratio_photo_browser_over_server": round(med(browser_photo) / med(server_photo), 2),
        "goal_ratio": 5,
        "browser_threads": threads,
        "photos": len(photos),
    }
    save("ondevice", result)
    return result


def _twelve_megapixels(photo: bytes) -> bytes:
    """A 4000 x 3000 JPEG (a phone camera's size) made from a shipped photo."""
    from PIL import Image

    out = io.BytesIO()
    Image.open(io.BytesIO(photo)).convert("RGB").resize((4000, 3000), Image.Resampling.BICUBIC).save(
        out, "JPEG", quality=90
    )
    return out.getvalue()


def _ms(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


if __name__ == "__main__":
    print(main())
