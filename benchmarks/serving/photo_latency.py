"""Photo API latency for a 12-megapixel phone JPEG and a 500 px photo, end to end over HTTP, against
a naive pipeline in the same run (full-size Pillow decode + torch eager forward); and the backbone
alone, onnxruntime (opened as serving opens it) against torch eager, at batch 1 and 32, each engine
timed in its own block after a warm-up. Medians of 5 (backbone: of 21 at batch 1, 5 at batch 32).
Run: python -m benchmarks.serving.photo_latency"""

from __future__ import annotations

import io
import os
import statistics
import sys
import time
from typing import Any

import httpx
import numpy as np
from PIL import Image

from benchmarks.harness.common import SHARED_FLOWERS, WORK, block, save, timed
from benchmarks.harness.models import prepare
from benchmarks.harness.servers import Server, python


def phone_photos() -> dict[str, bytes]:
    """A 12 MP JPEG made by upscaling a real photo (a synthetic one when ../shared is absent), and 500 px."""
    source = next(iter(sorted(SHARED_FLOWERS.glob("daisy/*.jpg"))), None) if SHARED_FLOWERS.is_dir() else None
    if source is not None:
        base = Image.open(source).convert("RGB")
    else:
        import random

        from bunga.data.synthetic import STYLES, draw_flower

        base = draw_flower(STYLES["sintetis_putih"], random.Random(0), 512)
    out = {}
    for name, size in (("12mp", (4000, 3000)), ("500px", (500, 375))):
        buffer = io.BytesIO()
        base.resize(size, Image.Resampling.BICUBIC).save(buffer, "JPEG", quality=90)
        out[name] = buffer.getvalue()
    return out


def naive(data: bytes, model: Any) -> None:
    import torch

    image = Image.open(io.BytesIO(data)).convert("RGB").resize((224, 224), Image.Resampling.BILINEAR)
    x = (torch.from_numpy(np.asarray(image, dtype=np.float32)) - 127.0) / 128.0
    with torch.no_grad():
        model(x.permute(2, 0, 1).unsqueeze(0))


def main() -> dict[str, Any]:
    import torch

    from bunga.models.image import BackboneRunner
    from bunga.models.torch_reference import load_classifier, make_embedder
    from bunga.predict import serving_session

    folders = prepare()
    photos = phone_photos()
    out: dict[str, Any] = {"end_to_end_ms": {}, "naive_ms": {}, "backbone_ms": {}}
    classifier = load_classifier()
    server = Server(
        "bunga-photos",
        python("-m", "bunga", "serve", "--model-dir", str(folders["logreg"]), "--port", "{port}"),
        "/ready",
        env={"BUNGA_SERVE_KINDS": '["photos"]'},
    )
    try:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            for name, data in photos.items():
                http.post("/predict/image", files={"file": ("p.jpg", data, "image/jpeg")})  # warm-up
                samples = []
                for _ in range(5):
                    start = time.perf_counter()
                    response = http.post("/predict/image", files={"file": ("p.jpg", data, "image/jpeg")})
                    samples.append((time.perf_counter() - start) * 1000)
                    assert response.status_code == 200, response.text
                out["end_to_end_ms"][name] = statistics.median(samples)
                out["naive_ms"][name] = timed(lambda d=data: naive(d, classifier), repeat=5)["median_s"] * 1000
                print(name, "bunga e2e", out["end_to_end_ms"][name], "naive", out["naive_ms"][name])
    finally:
        server.stop()
    runner = BackboneRunner(WORK / "cache")
    session = serving_session(runner.path, None)  # exactly as `bunga serve` opens a photo graph
    embedder = make_embedder()
    torch.set_num_threads(os.cpu_count() or 1)
    for batch in (1, 32):
        x = np.random.default_rng(0).normal(0, 0.5, (batch, 3, 224, 224)).astype(np.float32)
        tx = torch.from_numpy(x)
        repeat = 21 if batch == 1 else 5
        # Each engine in its own block after its own warm-up: timed in alternation, one engine's
        # spinning or cache state slows the other.
        onnx_ms = block(lambda: session.run(["embedding"], {"input": x}), repeat) * 1000
        with torch.no_grad():
            torch_ms = block(lambda: embedder(tx), repeat) * 1000
        out["backbone_ms"][f"batch{batch}"] = {
            "onnxruntime": onnx_ms,
            "torch_eager": torch_ms,
            "speedup": torch_ms / onnx_ms,
        }
        print(f"backbone batch {batch}: onnxruntime {onnx_ms:.1f} ms, torch {torch_ms:.1f} ms")
    out["backbone_settings"] = {
        "onnxruntime": "serving session (bunga.predict): default intra-op threads, spinning off",
        "torch": f"eager, no_grad, {torch.get_num_threads()} threads",
        "method": "each engine in its own block, 3 warm-up calls, median of 21 (batch 1) / 5 (batch 32)",
    }
    out["ratios"] = {name: out["end_to_end_ms"][name] / out["naive_ms"][name] for name in photos}
    save("photo_latency", out)
    return out


if __name__ == "__main__":
    main()
    sys.exit(0)
