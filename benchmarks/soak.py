"""Soak: mixed traffic at a fixed rate against a real `bunga serve` on 127.0.0.1 (90 % /predict,
10 % /predict/image), reporting errors, p50/p99 latency and RSS at start and end.
Run: python -m benchmarks.soak [seconds] [requests per second]"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from typing import Any

import httpx

from benchmarks.common import ROOT, save
from benchmarks.models import prepare
from benchmarks.servers import Server, python

RECORD = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


async def drive(url: str, seconds: float, rate: float, photo: bytes, workers: int = 16) -> tuple[list[float], int, int]:
    """``workers`` paced clients, each sending at rate/workers on a fixed schedule (a late request is
    sent at once, never skipped), for ``seconds``."""
    latencies: list[float] = []
    errors = 0
    sent = 0
    interval = workers / rate
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=httpx.Limits(max_connections=workers)) as http:
        begin = time.perf_counter()

        async def worker(offset: int) -> None:
            nonlocal errors, sent
            k = 0
            while True:
                due = begin + (k + offset / workers) * interval
                if due - begin >= seconds:
                    return
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                i = sent
                sent += 1
                k += 1
                start = time.perf_counter()
                try:
                    if i % 10 == 0:
                        r = await http.post("/predict/image", files={"file": ("a.jpg", photo, "image/jpeg")})
                    else:
                        r = await http.post("/predict", json=RECORD)
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                latencies.append((time.perf_counter() - start) * 1000)
                errors += not ok

        await asyncio.gather(*(worker(w) for w in range(workers)))
    return latencies, errors, sent


def main(seconds: float = 60, rate: float = 250) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    from tests.helpers import photo_bytes

    folders = prepare()
    server = Server(
        "bunga-soak",
        python("-m", "bunga", "serve", "--model-dir", str(folders["logreg"]), "--port", "{port}"),
        "/ready",
    )
    try:
        photo = photo_bytes()
        asyncio.run(drive(server.url, 2, 50, photo))  # warm-up
        rss_start = server.rss_mb()
        latencies, errors, sent = asyncio.run(drive(server.url, seconds, rate, photo))
        rss_end = server.rss_mb()
    finally:
        server.stop()
    q = statistics.quantiles(latencies, n=100)
    out = {
        "seconds": seconds,
        "target_rate": rate,
        "requests": sent,
        "errors": errors,
        "achieved_rate": sent / seconds,
        "p50_ms": q[49],
        "p99_ms": q[98],
        "rss_start_mb": rss_start,
        "rss_end_mb": rss_end,
        "rss_growth_mb": rss_end - rss_start,
        "client": "httpx.AsyncClient, 16 paced clients at a fixed total rate",
    }
    print(out)
    save("soak", out)
    return out


if __name__ == "__main__":
    args = [float(a) for a in sys.argv[1:3]]
    main(*args)
    sys.exit(0)
