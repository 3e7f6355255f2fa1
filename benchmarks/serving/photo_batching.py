"""Adaptive micro-batching of `/predict/image`, in one run: the same photo model served by one worker
with batching (at most 32 photos, no waiting), with batching that waits 5 ms for photos still being
read, and without (the default), loaded by wrk with a 500 px JPEG at 1, 8 and 32 connections; the
three servers take turns (ABC ABC ABC, a fresh server each turn) so a drift of the machine during the
run does not favour one of them; medians of the 3 turns of 10 s each. And the limit: the serving
graph's own batch-32 and batch-1 throughput in-process (median of 5 calls after a warm-up).
Run: python -m benchmarks.serving.photo_batching"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness.common import save, timed
from benchmarks.harness.load import median_of, multipart, wrk_raw
from benchmarks.harness.models import prepare
from benchmarks.harness.servers import Server, python
from benchmarks.serving.photo_latency import phone_photos

CONNECTIONS = (1, 8, 32)
REPEATS, SECONDS = 3, 10


def serve(name: str, model_dir: str, env: dict[str, str]) -> Server:
    return Server(
        name,
        python("-m", "bunga", "serve", "--model-dir", model_dir, "--port", "{port}"),
        "/ready",
        env={"BUNGA_SERVE_KINDS": '["photos"]', **env},
    )


def in_process_limit(model_dir: str) -> dict[str, float]:
    """Photos/s of the serving graph at batch 32 and batch 1, called directly (no HTTP, no decode)."""
    from bunga.predict import Predictor

    predictor = Predictor(Path(model_dir) / "photos")
    out = {}
    for batch in (1, 32):
        x = np.random.default_rng(0).normal(0, 0.5, (batch, 3, 224, 224)).astype(np.float32)
        for _ in range(3):
            predictor.score_photos(x)
        seconds = timed(lambda x=x: predictor.score_photos(x), repeat=5)["median_s"]
        out[f"batch{batch}_photos_per_s"] = batch / seconds
    return out


def main() -> dict[str, Any]:
    folders = prepare()
    model_dir = str(folders["logreg"])
    body, content_type = multipart("file", "p.jpg", phone_photos()["500px"], "image/jpeg")
    out: dict[str, Any] = {"limit": in_process_limit(model_dir), "servers": {}}
    arms = {
        "batched": {"BUNGA_PHOTO_BATCH_MAX": "32"},  # batches form while the model is busy, no waiting
        "batched_wait5ms": {"BUNGA_PHOTO_BATCH_MAX": "32", "BUNGA_PHOTO_BATCH_WAIT_MS": "5"},
        "unbatched": {},  # the default
    }
    runs: dict[str, dict[int, list[dict[str, float]]]] = {arm: {c: [] for c in CONNECTIONS} for arm in arms}
    for turn in range(REPEATS):
        for arm, env in arms.items():
            server = serve(f"bunga-photos-{arm}", model_dir, env)
            try:
                url = f"{server.url}/predict/image"
                wrk_raw(url, body, content_type, 8, 3)  # warm-up
                for c in CONNECTIONS:
                    runs[arm][c].append(wrk_raw(url, body, content_type, c, SECONDS))
                    print(f"turn {turn}", arm, f"c={c}", runs[arm][c][-1])
                    time.sleep(1)
            finally:
                server.stop()
    out["servers"] = {arm: {f"c{c}": median_of(r) for c, r in by_c.items()} for arm, by_c in runs.items()}
    batched, unbatched = out["servers"]["batched"], out["servers"]["unbatched"]
    waiting = out["servers"]["batched_wait5ms"]
    out["ratios"] = {
        "c8_batched_vs_unbatched": batched["c8"]["rps"] / unbatched["c8"]["rps"],
        "c8_wait5ms_vs_unbatched": waiting["c8"]["rps"] / unbatched["c8"]["rps"],
        "c32_p99_batched_vs_unbatched": batched["c32"]["p99_ms"] / unbatched["c32"]["p99_ms"],
        "limit_batch32_vs_batch1": out["limit"]["batch32_photos_per_s"] / out["limit"]["batch1_photos_per_s"],
        "c32_batched_vs_limit": batched["c32"]["rps"] / out["limit"]["batch32_photos_per_s"],
        "c1_p50_added_ms": batched["c1"]["p50_ms"] - unbatched["c1"]["p50_ms"],
    }
    out["settings"] = {
        "photo": "500x375 JPEG (quality 90) of a real daisy, one photo per request",
        "load": f"wrk -t1, {REPEATS} turns of {SECONDS} s per point (servers take turns), medians; 1 uvicorn worker",
        "limit": "Predictor.score_photos on random 224 px tensors, median of 5 after 3 warm-up calls",
    }
    print(out["ratios"])
    save("photo_batching", out)
    return out


if __name__ == "__main__":
    main()
    sys.exit(0)
