"""Downloads of the phone's graphs and runtime: streamed with bounded memory, their own slots (past
them 503 + Retry-After, never /predict's), a minimum rate instead of the request time limit (a phone at
100 kB/s gets the whole file; a client that stops reading is cut off) and a budget in bytes per
client address (a 304 costs nothing)."""

from __future__ import annotations

import contextlib
import hashlib
import socket
import threading
import time
from pathlib import Path

import httpx
import psutil

from bunga.predict import Predictor
from bunga.schemas import FEATURES
from tests.conftest import LiveServer

STATIC_ORT = Path(__file__).resolve().parents[2] / "src" / "bunga" / "serving" / "static" / "ort"
GRAPH = "/models/photos/model.onnx"
MB = 1024 * 1024


def _request(port: int, path: str, extra: str = "") -> socket.socket:
    """A connection that asked for ``path``, with a small receive buffer (a phone's, not loopback's)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n".encode())
    return sock


def _head(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and the first body bytes already received."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, "closed before the headers"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, rest


def _paced_get(port: int, path: str, rate: float, fast_after_s: float | None = None, extra: str = "") -> bytes:
    """The whole body of ``path`` read at ``rate`` bytes/s (after ``fast_after_s`` seconds: as fast as
    it comes); fails if the server cuts the download short."""
    sock = _request(port, path, extra)
    sock.settimeout(30)
    try:
        status, headers, body = _head(sock)
        assert status == 200, (status, headers)
        size = int(headers["content-length"])
        started = time.monotonic()
        while len(body) < size:
            elapsed = time.monotonic() - started
            if fast_after_s is None or elapsed < fast_after_s:
                ahead = len(body) / rate - elapsed
                if ahead > 0:
                    time.sleep(ahead)
            chunk = sock.recv(8192)
            assert chunk, f"cut off after {len(body):,} of {size:,} bytes ({time.monotonic() - started:.0f} s)"
            body += chunk
        return body
    finally:
        sock.close()


def _rss(server: LiveServer) -> float:
    return psutil.Process(server.proc.pid).memory_info().rss / MB


def _predict_ok(server: LiveServer) -> bool:
    row = dict.fromkeys(FEATURES, 3.0)
    return httpx.post(f"{server.url}/predict", json=row, timeout=10).status_code == 200


def test_a_download_flood_keeps_memory_bounded_and_a_slow_phone_gets_every_byte(
    model_dir: Path, tmp_path: Path
) -> None:
    """100 clients that ask for the graph and never read, and 60 that read at 8 kB/s, all downloading at
    once (slots raised to 200): the server stays within 100 MB of its idle RSS, /predict answers all
    along, the stalled clients are cut off, and a phone at 100 kB/s still gets the whole graph and the
    whole runtime (38 s for its 3.8 MB: past the request time limit of 20 s)."""
    env = {
        "BUNGA_DATA_DIR": str(tmp_path / "d"),
        "BUNGA_DOWNLOAD_MAX_CONCURRENCY": "200",
        "BUNGA_DOWNLOAD_BUDGET_BYTES": "0",  # this test is about memory: no per-address budget
    }
    server = LiveServer(env, ["--model-dir", str(model_dir)], tmp_path)
    sha = Predictor(model_dir / "photos").card.onnx_sha256
    runtime = STATIC_ORT / "ort-wasm-simd-threaded.wasm"
    phone: dict[str, bytes] = {}
    errors: list[BaseException] = []

    def run(name: str, path: str, fast_after_s: float | None, extra: str = "") -> None:
        try:
            phone[name] = _paced_get(server.port, path, 100_000, fast_after_s, extra)
        except BaseException as err:
            errors.append(err)

    def slow_reader(sock: socket.socket, stop: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while not stop.is_set() and sock.recv(4096):
                time.sleep(0.5)

    try:
        assert _predict_ok(server) and httpx.get(f"{server.url}/models/photos/rules").status_code == 200
        idle = _rss(server)
        readers = [threading.Thread(target=run, args=("graph", GRAPH, 30.0))]  # 3 MB at 100 kB/s, then the rest
        if runtime.is_file():  # built by `make web` (make test runs it)
            readers.append(
                threading.Thread(
                    target=run, args=("runtime", f"/static/ort/{runtime.name}", None, "Accept-Encoding: gzip\r\n")
                )
            )
        for reader in readers:
            reader.start()
        stalled = [_request(server.port, GRAPH) for _ in range(100)]
        stop = threading.Event()
        slow = [_request(server.port, GRAPH) for _ in range(60)]
        slow_threads = [threading.Thread(target=slow_reader, args=(s, stop), daemon=True) for s in slow]
        for thread in slow_threads:
            thread.start()
        peak, answered = idle, 0
        started = time.monotonic()
        while time.monotonic() - started < 45:
            time.sleep(1.0)
            peak = max(peak, _rss(server))
            answered += _predict_ok(server)
        stop.set()
        assert answered >= 40, f"/predict answered {answered} times in 45 s of download flood"
        assert peak - idle < 100, f"RSS {idle:.0f} MB idle, {peak:.0f} MB during the flood"
        metrics = httpx.get(f"{server.url}/metrics").text
        cut = next(
            float(line.split()[-1])
            for line in metrics.splitlines()
            if line.startswith('bunga_requests_rejected_total{reason="slow_download"}')
        )
        assert cut >= 100, f"{cut:.0f} stalled or slow downloads cut off"
        for reader in readers:
            reader.join(timeout=120)
        assert not errors, errors
        assert hashlib.sha256(phone["graph"]).hexdigest() == sha
        if runtime.is_file():
            assert phone["runtime"] == (STATIC_ORT / f"{runtime.name}.gz").read_bytes()
        for sock in stalled + slow:
            sock.close()
    finally:
        server.stop()


def test_downloads_have_their_own_slots_and_a_budget_per_address(model_dir: Path, tmp_path: Path) -> None:
    """With the default limits: downloads past the 16 slots are answered 503 + Retry-After while
    /predict answers; a closed download frees its slot; one address gets about 500 MB at once (26
    graphs), then 429 + Retry-After, and a 304 for the graph it already holds still answers."""
    server = LiveServer({"BUNGA_DATA_DIR": str(tmp_path / "d")}, ["--model-dir", str(model_dir)], tmp_path)
    sha = Predictor(model_dir / "photos").card.onnx_sha256
    try:
        held = [_request(server.port, GRAPH) for _ in range(16)]
        for sock in held:
            assert _head(sock)[0] == 200  # each holds a slot: never read further
        extra = _request(server.port, GRAPH)
        status, headers, body = _head(extra)
        while len(body) < int(headers.get("content-length", 0)):  # a small answer may come in two reads
            body += extra.recv(4096)
        assert status == 503 and int(headers["retry-after"]) >= 1 and b"downloads" in body, (status, body)
        extra.close()
        assert _predict_ok(server)  # /predict's slots are its own
        for sock in held:
            sock.close()
        deadline = time.monotonic() + 30
        while "bunga_downloads_in_flight 0.0" not in httpx.get(f"{server.url}/metrics").text:
            assert time.monotonic() < deadline, "the closed downloads kept their slots"
            time.sleep(0.2)
        with httpx.Client(base_url=server.url, timeout=30) as http:
            statuses = [http.get(GRAPH).status_code for _ in range(40)]
            refused = http.get(GRAPH)
            assert refused.status_code == 429 and "bytes downloaded" in refused.text
            assert int(refused.headers["retry-after"]) >= 1
            held_already = http.get(GRAPH, headers={"If-None-Match": f'"{sha}"'})
            assert held_already.status_code == 304
        graph = (model_dir / "photos" / "model.onnx").stat().st_size
        whole = statuses.count(200)  # the 16 held downloads were charged too: a download costs its size
        assert 16 + whole == 500_000_000 // graph and set(statuses[whole:]) == {429}, statuses
    finally:
        server.stop()
