"""File downloads: the phone's graphs and rules (``/models/...``) and the on-phone runtime
(``/static/ort/...``). A graph is 19 MB and phones on a garden's Wi-Fi are slow, so downloads are
treated apart from the API's requests:

- they stream from an open file in chunks (memory per download is one chunk plus the transport's
  buffer, whatever the client's speed);
- they have their own slots per worker (``download_max_concurrency``, 503 + Retry-After past it), so
  slow readers never take ``/predict``'s;
- instead of the request time limit, a minimum rate: a download that moves less than
  ``min_rate x window`` bytes in any ``window`` seconds is cut off (:class:`RateFloor`);
- each client address has a budget in bytes (``TokenBuckets`` in bytes; a ``304`` costs nothing).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import BinaryIO

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from bunga.serving.limits import check_rate

PREFIXES = ("/models/", "/static/ort/")
CHUNK = 64 * 1024  # what a download holds in memory, besides the transport's own buffer


def is_download(path: str) -> bool:
    """True for the paths that serve files to phones."""
    return path.startswith(PREFIXES)


class RateFloor:
    """Cuts a download that is slower than ``min_rate`` bytes/s over a whole ``window`` of seconds: the
    client must move ``min_rate x window`` bytes per window, so a reader that stopped (its socket
    buffers full) is cut one window later, and a phone at 5x the floor never is."""

    def __init__(self, timeout: asyncio.Timeout, min_rate: float, window: float) -> None:
        self.timeout, self.window = timeout, window
        self.step = min_rate * window
        self.sent = self.mark = 0
        self._reschedule()

    def _reschedule(self) -> None:
        self.timeout.reschedule(asyncio.get_running_loop().time() + self.window)

    def moved(self, size: int) -> None:
        """``size`` more bytes were handed to the client's connection."""
        self.sent += size
        if self.sent - self.mark >= self.step:
            self.mark = self.sent
            self._reschedule()


class FileStream(Response):
    """A file already opened, streamed in chunks and closed at the end, however the response ends (a
    file replaced while it is sent keeps serving the bytes it was opened with)."""

    def __init__(self, handle: BinaryIO, size: int, media_type: str, headers: dict[str, str]) -> None:
        super().__init__(None, 200, {**headers, "content-length": str(size)}, media_type)
        self.handle = handle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            while chunk := await run_in_threadpool(self.handle.read, CHUNK):  # a cold disk never stalls the loop
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            self.handle.close()


def _open(path: Path) -> tuple[BinaryIO, int]:
    handle = path.open("rb")
    return handle, os.fstat(handle.fileno()).st_size


async def download(request: Request, path: Path, media_type: str, headers: dict[str, str]) -> FileStream:
    """The file at ``path`` as a stream, charged to this client's byte budget (429 past it); OSError
    when it cannot be opened."""
    handle, size = await run_in_threadpool(_open, path)
    try:
        check_rate(request, request.app.state.download_buckets, "download_budget", size, "bytes downloaded")
    except Exception:
        handle.close()
        raise
    return FileStream(handle, size, media_type, headers)
