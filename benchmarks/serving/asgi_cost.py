"""Where a `/predict` request's time goes inside the process: each app is called directly through ASGI
(no network, no uvicorn), the apps taking turns round after round, medians of the rounds. The apps:
FastAPI's constant floor (the benchmark's), the same floor with a Request-only endpoint, a bare
Starlette route, and bunga's own app: as served, with `/predict` through its documented FastAPI route
instead of the plain route that serves it, and without its guard middleware. A dev measurement behind
the README's paragraph on the floor; it needs the measurement model that `make bench` exports.
Run: python -m benchmarks.serving.asgi_cost [rounds]"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
from typing import Any

from fastapi import FastAPI, Request, Response
from starlette.routing import Route

from benchmarks.harness.common import WORK
from benchmarks.harness.models import prepare
from benchmarks.serving.api_throughput import RECORD
from benchmarks.serving.floor_apps import CONSTANT, fastapi_app
from bunga.serving.routes.predict import SERVED_DIRECTLY
from bunga.serving.schemas import PredictRequest

BODY = json.dumps(RECORD).encode()
ANSWER = json.dumps(CONSTANT, separators=(",", ":")).encode()
Message = dict[str, Any]


def scope() -> dict[str, Any]:
    headers = [(b"host", b"127.0.0.1"), (b"content-type", b"application/json")]
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/predict",
        "raw_path": b"/predict",
        "query_string": b"",
        "root_path": "",
        "headers": [*headers, (b"content-length", str(len(BODY)).encode())],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def call(app: Any) -> None:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope(), receive, send)
    if sent[0]["status"] != 200:
        raise RuntimeError(f"{sent[0]['status']}: {sent[-1].get('body', b'')[:200]!r}")


async def start(app: Any) -> asyncio.Task[None]:
    """Run the app's lifespan start-up (bunga loads its models there); the task stays in its lifespan."""
    inbox: asyncio.Queue[Message] = asyncio.Queue()
    outbox: asyncio.Queue[Message] = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    lifespan_scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    lifespan = asyncio.create_task(app(lifespan_scope, inbox.get, outbox.put))
    message = await outbox.get()
    if message["type"] != "lifespan.startup.complete":
        raise RuntimeError(str(message))
    return lifespan


def floors() -> dict[str, Any]:
    """FastAPI's floor, the floor with a Request-only endpoint, and a bare Starlette route."""

    async def parse_only(request: Request) -> Response:
        PredictRequest.model_validate_json(await request.body())
        return Response(ANSWER, media_type="application/json")

    request_only = FastAPI()
    request_only.post("/predict")(parse_only)
    starlette = FastAPI()
    starlette.router.routes.insert(0, Route("/predict", parse_only, methods=["POST"]))
    return {"fastapi floor": fastapi_app, "floor, Request-only endpoint": request_only, "Starlette route": starlette}


async def main(rounds: int) -> None:
    from bunga.serving import app as serving

    os.environ["BUNGA_MODEL_DIR"] = str(prepare()["logreg"])
    os.environ["BUNGA_SERVE_KINDS"] = '["measurements"]'
    os.environ["BUNGA_MONITOR_DB"] = str(WORK / "asgi-cost-monitor.db")
    apps = floors()
    apps["bunga"] = serving.create_app()
    fastapi_route = serving.create_app()  # /predict through its documented FastAPI route (before 2026-11-27)
    # by identity: Starlette routes compare equal by path, endpoint and methods, so the documented
    # FastAPI twin would also match `in SERVED_DIRECTLY` wherever FastAPI lists it flat
    direct = {id(r) for r in SERVED_DIRECTLY}
    fastapi_route.router.routes[:] = [r for r in fastapi_route.router.routes if id(r) not in direct]
    apps["bunga, FastAPI's /predict route"] = fastapi_route
    add_middleware = FastAPI.add_middleware
    FastAPI.add_middleware = lambda *_, **__: None  # type: ignore[method-assign]  # the same app without Guard
    try:
        apps["bunga without its guard"] = serving.create_app()
    finally:
        FastAPI.add_middleware = add_middleware  # type: ignore[method-assign]
    bunga_apps = ("bunga", "bunga, FastAPI's /predict route", "bunga without its guard")
    running = [await start(apps[name]) for name in bunga_apps]
    micros: dict[str, list[float]] = {name: [] for name in apps}
    for app in apps.values():
        for _ in range(1000):
            await call(app)
    for _ in range(rounds):
        for name, app in apps.items():
            n, began = 1500, time.perf_counter()
            for _ in range(n):
                await call(app)
            micros[name].append((time.perf_counter() - began) / n * 1e6)
    floor = statistics.median(micros["fastapi floor"])
    for name, series in micros.items():
        median = statistics.median(series)
        print(f"{name:30s} {median:7.1f} µs per request  ({floor / median:.0%} of the floor's rate)")
    for lifespan in running:
        lifespan.cancel()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 11))
