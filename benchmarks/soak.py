"""Soak: mixed traffic at a fixed rate against a real `bunga serve` on 127.0.0.1 (90 % /predict,
10 % /predict/image, and now and then a visitor's /feedback), reporting errors, the achieved rate
over measured wall-clock time, p50/p99 latency from each request's scheduled time, whether the server
fell behind, and RSS at start and end. Meanwhile one abusive client hammers /feedback as fast as it
can: it must be refused (429) without a single error for the others, and the inbox must stay within
its quota. Clients are told apart by X-Forwarded-For (127.0.0.1 is the trusted proxy).
Run: python -m benchmarks.soak [seconds] [requests per second]"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import sys
import time
from typing import Any

import httpx

from benchmarks.common import ROOT, WORK, save
from benchmarks.models import prepare
from benchmarks.servers import Server, python

RECORD = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


async def hammer(url: str, seconds: float, photo: bytes) -> dict[str, int]:
    """One client posting feedback photos back to back for ``seconds``: status -> count."""
    statuses: dict[int, int] = {}
    headers = {"X-Forwarded-For": "10.9.9.9"}
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            try:
                r = await http.post("/feedback", files={"file": ("a.jpg", photo, "image/jpeg")}, headers=headers)
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            except httpx.HTTPError:
                statuses[0] = statuses.get(0, 0) + 1
    return statuses


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
                try:
                    if k % 400 == 399:  # a visitor's feedback: about 2 a minute from each client address
                        headers = {"X-Forwarded-For": f"10.0.0.{offset + 1}"}
                        files = {"file": ("a.jpg", photo, "image/jpeg")}
                        r = await http.post("/feedback", files=files, data={"label": "rose"}, headers=headers)
                        ok = r.status_code == 201
                    elif i % 10 == 0:
                        r = await http.post("/predict/image", files={"file": ("a.jpg", photo, "image/jpeg")})
                        ok = r.status_code == 200
                    else:
                        r = await http.post("/predict", json=RECORD)
                        ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                k += 1
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
    data = WORK / "soak-data"
    shutil.rmtree(data, ignore_errors=True)
    quota = 5_000_000
    env = {"BUNGA_DATA_DIR": str(data), "BUNGA_INBOX_MAX_BYTES": str(quota), "BUNGA_MONITOR_DB": str(data / "m.db")}
    server = Server(
        "bunga-soak",
        python("-m", "bunga", "serve", "--model-dir", str(folders["logreg"]), "--port", "{port}"),
        "/ready",
        env=env,
    )
    try:
        photo = photo_bytes()
        asyncio.run(drive(server.url, 2, 50, photo))  # warm-up
        rss_start = server.rss_mb()

        async def both() -> tuple[dict[str, Any], dict[str, int]]:
            legit, abuse = await asyncio.gather(
                drive(server.url, seconds, rate, photo), hammer(server.url, seconds, photo)
            )
            return legit, abuse

        run, abuse = asyncio.run(both())
        rss_end = server.rss_mb()
        inbox = httpx.get(f"{server.url}/model").json()["inbox"]
    finally:
        server.stop()
    out = {
        "seconds": seconds,
        "target_rate": rate,
        **run,
        "rss_start_mb": rss_start,
        "rss_end_mb": rss_end,
        "rss_growth_mb": rss_end - rss_start,
        "hammer_statuses": {str(k): v for k, v in sorted(abuse.items())},
        "inbox_bytes": inbox["bytes"],
        "inbox_quota_bytes": quota,
        "client": "httpx.AsyncClient, 16 paced clients at a fixed total rate; latency from the scheduled send time",
    }
    print(out)
    save("soak", out)
    return out


if __name__ == "__main__":
    args = [float(a) for a in sys.argv[1:3]]
    main(*args)
    sys.exit(0)
