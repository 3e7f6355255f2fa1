"""Soak: mixed traffic at a fixed rate against a real `bunga serve` on 127.0.0.1 (90 % /predict,
10 % /predict/image, and now and then a visitor's /feedback), reporting errors, the achieved rate
over measured wall-clock time, p50/p99 latency from each request's scheduled time, whether the server
fell behind, and RSS at start and end. Meanwhile one abusive client hammers /feedback as fast as it
can: it must be refused (429) without a single error for the others, and the inbox must stay within
its quota. Clients are told apart by X-Forwarded-For (127.0.0.1 is the trusted proxy).
Run: python -m benchmarks.serving.soak [seconds] [requests per second]"""

from __future__ import annotations

import asyncio
import json
import shutil
import statistics
import sys
import time
from typing import Any

import aiohttp
import httpx

from benchmarks.harness.common import ROOT, WORK, save
from benchmarks.harness.load import multipart
from benchmarks.harness.models import prepare
from benchmarks.harness.servers import Server, python
from benchmarks.serving.api_throughput import RECORD

JSON = {"Content-Type": "application/json"}


class Bodies:
    """Every request body and its headers built once: the clients spend their CPU on sending, not on
    encoding."""

    def __init__(self, photo: bytes) -> None:
        self.record = json.dumps(RECORD).encode()
        self.photo, photo_type = multipart("file", "a.jpg", photo, "image/jpeg")
        self.photo_headers = {"Content-Type": photo_type}
        self.feedback, feedback_type = multipart("file", "a.jpg", photo, "image/jpeg", {"label": "rose"})
        self.feedback_headers = {"Content-Type": feedback_type}


async def hammer(url: str, seconds: float, bodies: Bodies) -> dict[str, int]:
    """One client posting feedback photos back to back for ``seconds``: status -> count."""
    statuses: dict[int, int] = {}
    headers = {"X-Forwarded-For": "10.9.9.9", **bodies.feedback_headers}
    async with aiohttp.ClientSession(url, timeout=aiohttp.ClientTimeout(total=30)) as http:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            try:
                async with http.post("/feedback", data=bodies.feedback, headers=headers) as r:
                    await r.read()
                    statuses[r.status] = statuses.get(r.status, 0) + 1
            except (aiohttp.ClientError, TimeoutError):
                statuses[0] = statuses.get(0, 0) + 1
    return statuses


async def drive(url: str, seconds: float, rate: float, bodies: Bodies, workers: int = 16) -> dict[str, Any]:
    """``workers`` paced clients sending at rate/workers each on a fixed schedule for ``seconds``.

    Latency runs from each request's *scheduled* time, not its actual send, so a server that falls
    behind shows up in the latency instead of slowing the clients down (no coordinated omission).
    The achieved rate is completed requests over the measured wall-clock time. The client's own CPU
    (aiohttp, bodies encoded once) is reported: a load generator near a full core would make the
    verdict the client's, not the server's.
    """
    latencies: list[float] = []
    lateness: list[float] = []
    errors = 0
    sent = 0
    interval = workers / rate
    connector = aiohttp.TCPConnector(limit=workers + 1)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(url, connector=connector, timeout=timeout) as http:
        begin, cpu = time.perf_counter(), time.process_time()

        async def post(path: str, body: bytes, headers: dict[str, str], expected: int) -> bool:
            async with http.post(path, data=body, headers=headers) as r:
                await r.read()
                return r.status == expected

        async def worker(offset: int) -> None:
            nonlocal errors, sent
            k = 0
            feedback_headers = {"X-Forwarded-For": f"10.0.0.{offset + 1}", **bodies.feedback_headers}
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
                        ok = await post("/feedback", bodies.feedback, feedback_headers, 201)
                    elif i % 10 == 0:
                        ok = await post("/predict/image", bodies.photo, bodies.photo_headers, 200)
                    else:
                        ok = await post("/predict", bodies.record, JSON, 200)
                except (aiohttp.ClientError, TimeoutError):
                    ok = False
                k += 1
                latencies.append((time.perf_counter() - due) * 1000)
                errors += not ok

        await asyncio.gather(*(worker(w) for w in range(workers)))
        elapsed = time.perf_counter() - begin
        client_cpu = time.process_time() - cpu
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
        "client_cpu_cores": client_cpu / elapsed,  # the load generator and the hammer, one process
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
        bodies = Bodies(photo_bytes())
        asyncio.run(drive(server.url, 2, 50, bodies))  # warm-up
        rss_start, server_cpu = server.rss_mb(), server.cpu_seconds()

        async def both() -> tuple[dict[str, Any], dict[str, int]]:
            legit, abuse = await asyncio.gather(
                drive(server.url, seconds, rate, bodies), hammer(server.url, seconds, bodies)
            )
            return legit, abuse

        run, abuse = asyncio.run(both())
        run["server_cpu_cores"] = (server.cpu_seconds() - server_cpu) / run["elapsed_s"]
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
        "client": "aiohttp, bodies encoded once, 16 paced clients at a fixed total rate; latency from the scheduled send time",
    }
    print(out)
    save("soak", out)
    return out


if __name__ == "__main__":
    args = [float(a) for a in sys.argv[1:3]]
    main(*args)
    sys.exit(0)
