"""Soak: mixed traffic at a fixed rate against a real `bunga serve` on 127.0.0.1 (90 % /predict,
10 % /predict/image), reporting errors, the achieved rate over measured wall-clock time, p50/p99
latency from each request's scheduled time, whether the server fell behind, and RSS at start and end.
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


async def drive(url: str, seconds: float, rate: float, photo: bytes, workers: int = 16) -> dict[str, Any]:
    """``workers`` paced clients sending at rate/workers each on a fixed schedule for ``seconds``.

    Latency runs from each request's *scheduled* time, not its actual send, so a server that falls
    behind shows up in the latency instead of slowing the clients down (no coordinated omission).
    The achieved rate is completed requests over the measured wall-clock time.
    """
    latencies: list[float] = []
    lateness: list[float] = []
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
                lateness.append(max(0.0, time.perf_counter() - due) * 1000)
                i = sent
                sent += 1
                k += 1
                try:
                    if i % 10 == 0:
                        r = await http.post("/predict/image", files={"file": ("a.jpg", photo, "image/jpeg")})
                    else:
                        r = await http.post("/predict", json=RECORD)
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                latencies.append((time.perf_counter() - due) * 1000)
                errors += not ok

        await asyncio.gather(*(worker(w) for w in range(workers)))
        elapsed = time.perf_counter() - begin
    q = statistics.quantiles(latencies, n=100)
    achieved = len(latencies) / elapsed
    return {
        "requests": sent,
        "errors": errors,
        "elapsed_s": elapsed,
        "achieved_rate": achieved,
        "p50_ms": q[49],
        "p99_ms": q[98],
        "max_send_lateness_ms": max(lateness),
        # behind: the clients could not keep to the schedule because answers came back too slowly
        "fell_behind": achieved < 0.95 * rate or elapsed > seconds * 1.05 + 1,
    }


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
        run = asyncio.run(drive(server.url, seconds, rate, photo))
        rss_end = server.rss_mb()
    finally:
        server.stop()
    out = {
        "seconds": seconds,
        "target_rate": rate,
        **run,
        "rss_start_mb": rss_start,
        "rss_end_mb": rss_end,
        "rss_growth_mb": rss_end - rss_start,
        "client": "httpx.AsyncClient, 16 paced clients at a fixed total rate; latency from the scheduled send time",
    }
    print(out)
    save("soak", out)
    return out


if __name__ == "__main__":
    args = [float(a) for a in sys.argv[1:3]]
    main(*args)
    sys.exit(0)
