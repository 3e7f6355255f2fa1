"""One pure-ASGI guard around the app: body size, concurrency and time limits, security headers,
and request metrics. Pure ASGI (no BaseHTTPMiddleware) keeps the hot path cheap. File downloads have
their own slots and a minimum rate instead of the time limit (bunga.serving.downloads)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bunga.serving.downloads import RateFloor, is_download
from bunga.serving.metrics import Metrics

log = logging.getLogger("bunga.serving")
PROBES = frozenset({"/health", "/ready", "/metrics"})
_CSP = (
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# Swagger UI (served locally) needs its inline bootstrap script.
_DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; frame-ancestors 'none'"
)
_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-embedder-policy", b"require-corp"),  # with COOP: cross-origin isolated, so the phone's
    # onnxruntime may run on more than one thread (SharedArrayBuffer); bunga loads nothing cross-origin
    (b"permissions-policy", b"camera=(self), geolocation=(), microphone=()"),
]


class Guard:
    """Limits, security headers and metrics for every HTTP request."""

    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        max_body: int,
        max_upload: int,
        max_concurrency: int,
        timeout: float,
        max_downloads: int = 16,
        download_floor: tuple[float, float] = (20_000.0, 15.0),  # bytes/s, over this many seconds
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body = max_body
        self.max_upload = max_upload
        self.max_concurrency = max_concurrency
        self.timeout = timeout
        self.max_downloads = max_downloads
        self.download_floor = download_floor
        self.inflight = 0
        self.downloads = 0
        metrics.inflight.set_function(lambda: self.inflight)
        metrics.downloads.set_function(lambda: self.downloads)
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._extra = {csp: [*_HEADERS, (b"content-security-policy", csp.encode())] for csp in (_CSP, _DOCS_CSP)}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        probe = path in PROBES
        headers = dict(scope["headers"])
        multipart = headers.get(b"content-type", b"").startswith(b"multipart/")
        limit = self.max_upload if multipart else self.max_body
        extra_headers = self._extra[_DOCS_CSP if path.startswith(("/docs", "/static-offline-docs")) else _CSP]
        state: dict[str, Any] = {"status": 0, "started": False}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"], state["started"] = message["status"], True
                message["headers"] = [*message.get("headers", []), *extra_headers]
            await send(message)

        async def reject(
            status: int, detail: str, reason: str | None, extra: tuple[tuple[bytes, bytes], ...] = ()
        ) -> None:
            if reason is not None:  # a refusal by a limit (an internal error is counted by status only)
                self.metrics.rejected.labels(reason).inc()
            if state["started"]:
                return
            body = json.dumps({"detail": detail}).encode()
            await send_wrapper(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        *extra,
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})

        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await reject(413, f"request body over the limit of {limit:,} bytes", "body_size")
            self._count(scope, 413, 0.0)
            return
        if is_download(path):
            await self._download(scope, receive, send_wrapper, reject, state)
            return
        if not probe and self.inflight >= self.max_concurrency:
            await reject(503, "server busy, please retry shortly", "concurrency", ((b"retry-after", b"1"),))
            self._count(scope, 503, 0.0)
            return

        received = 0
        # a body is still on its way: a timeout then means the client is too slow (408), not the server
        reading = (declared is not None and declared != b"0") or b"transfer-encoding" in headers

        async def counted_receive() -> Message:
            nonlocal received, reading
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                reading = bool(message.get("more_body", False))
                if received > limit:  # a lying or missing Content-Length: stop reading, answer 413
                    raise HTTPException(413, f"request body over the limit of {limit:,} bytes")
            return message

        async def tracked_receive() -> Message:
            nonlocal reading
            message = await receive()
            if message["type"] == "http.request":
                reading = bool(message.get("more_body", False))
            return message

        # With a Content-Length (checked above) the server delivers no more than it declared; only a
        # body without one (chunked) needs counting as it arrives.
        receive_wrapper = tracked_receive if declared is not None else counted_receive
        self.inflight += 1
        start = time.perf_counter()
        try:
            if probe:
                await self.app(scope, receive_wrapper, send_wrapper)
            else:
                async with asyncio.timeout(self.timeout):
                    await self.app(scope, receive_wrapper, send_wrapper)
        except TimeoutError:
            if reading:  # the whole time went on waiting for the client's body
                await reject(408, f"request body not received within {self.timeout:g} s", "slow_client")
                state["status"] = 408
            else:
                await reject(504, f"request took longer than {self.timeout:g} s", "timeout")
                state["status"] = 504
        except Exception as err:  # answered here so that a 500 carries the security headers too
            log.error("unhandled error on %s %s: %s", scope["method"], path, type(err).__name__, exc_info=err)
            await reject(500, "internal error; it has been logged", None)
            state["status"] = 500
        finally:
            self.inflight -= 1
            self._count(scope, state["status"] or 500, time.perf_counter() - start)

    async def _download(self, scope: Scope, receive: Receive, send: Send, reject: Any, state: dict[str, Any]) -> None:
        """A file download: its own slots (never the API's), cut off when slower than the floor."""
        if self.downloads >= self.max_downloads:
            await reject(
                503, "too many downloads at once, please retry shortly", "downloads", ((b"retry-after", b"5"),)
            )
            self._count(scope, 503, 0.0)
            return
        self.downloads += 1
        start = time.perf_counter()
        try:
            async with asyncio.timeout(None) as deadline:
                floor = RateFloor(deadline, *self.download_floor)

                async def paced_send(message: Message) -> None:
                    await send(message)
                    if message["type"] == "http.response.body":
                        floor.moved(len(message.get("body", b"")))

                await self.app(scope, receive, paced_send)
        except TimeoutError:
            rate, window = self.download_floor
            log.info("download of %s cut off: slower than %.0f bytes/s for %g s", scope["path"], rate, window)
            await reject(504, f"download slower than {rate:.0f} bytes/s for {window:g} s", "slow_download")
            state["status"] = 504
        except Exception as err:
            log.error("unhandled error on %s %s: %s", scope["method"], scope["path"], type(err).__name__, exc_info=err)
            await reject(500, "internal error; it has been logged", None)
            state["status"] = 500
        finally:
            self.downloads -= 1
            self._count(scope, state["status"] or 500, time.perf_counter() - start)

    def _count(self, scope: Scope, status: int, seconds: float) -> None:
        route = scope.get("route")
        label = getattr(route, "path", None) or ("/static" if scope["path"].startswith("/static") else "other")
        key = (scope["method"], label, status)
        children = self._children.get(key)
        if children is None:  # label lookups are cached: the hot path only increments
            children = (self.metrics.requests.labels(key[0], label, str(status)), self.metrics.latency.labels(label))
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)
