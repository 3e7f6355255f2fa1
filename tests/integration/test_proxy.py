"""The compose stack's reverse proxy (deploy/nginx/nginx.conf) run by Debian's real nginx in front of a
real `bunga serve`: the configuration passes `nginx -t`, requests reach bunga through it, and a client
trickling its headers is cut off by the proxy's header timeout."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, LiveServer, _free_port
from tests.helpers import missing, photo_bytes

CONF = ROOT / "deploy" / "nginx" / "nginx.conf"
HEADER_TIMEOUT_S = float(re.search(r"client_header_timeout (\d+)s", CONF.read_text()).group(1))  # type: ignore[union-attr]


def _nginx() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if found is None:
        missing("nginx (Debian's nginx package)")
    assert found is not None
    return found


def _conf(tmp_path: Path, upstream_port: int, port: int) -> Path:
    """The shipped configuration with compose's names replaced by this machine's addresses."""
    text = CONF.read_text().replace("server api:8000;", f"server 127.0.0.1:{upstream_port};")
    text = text.replace("listen 8080;", f"listen 127.0.0.1:{port};")
    conf = tmp_path / "nginx" / "nginx.conf"
    conf.parent.mkdir()
    conf.write_text(text)
    return conf


def _args(conf: Path) -> list[str]:
    prefix = conf.parent
    # As root, nginx's workers would run as nobody, who cannot enter pytest's private temp folders.
    user = "user root;" if os.geteuid() == 0 else ""
    return ["-p", str(prefix), "-c", str(conf), "-g", f"pid {prefix}/nginx.pid; error_log {prefix}/error.log; {user}"]


@pytest.fixture
def proxy(live_server: LiveServer, tmp_path: Path) -> Iterator[str]:
    nginx, port = _nginx(), _free_port()
    conf = _conf(tmp_path, live_server.port, port)
    checked = subprocess.run([nginx, "-t", *_args(conf)], capture_output=True, text=True)
    assert checked.returncode == 0 and "test is successful" in checked.stderr, checked.stderr
    log = (conf.parent / "out.log").open("w")
    proc = subprocess.Popen([nginx, *_args(conf)[:-1], _args(conf)[-1] + " daemon off;"], stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, (conf.parent / "error.log").read_text()
        time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def test_requests_reach_bunga_through_the_proxy(proxy: str) -> None:
    with httpx.Client(base_url=proxy, timeout=30) as http:
        iris = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
        assert http.post("/predict", json=iris).json()["predictions"][0]["species"] == "setosa"
        big = photo_bytes("sintetis_merah", 7, size=600)  # beyond nginx's in-memory body buffer
        assert len(big) > 16_384
        answer = http.post("/predict/image", files={"file": ("a.jpg", big, "image/jpeg")})
        assert answer.status_code == 200 and answer.json()["results"][0]["model_version"]
        assert "server" not in answer.headers or "nginx/" not in answer.headers["server"]  # no version shown


def test_a_client_trickling_its_headers_is_cut_off(proxy: str) -> None:
    port = int(proxy.rsplit(":", 1)[1])
    started = time.monotonic()
    closed_after = None
    with socket.create_connection(("127.0.0.1", port), timeout=HEADER_TIMEOUT_S + 10) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: bunga\r\nX-Slow: ")
        while time.monotonic() - started < HEADER_TIMEOUT_S + 10:
            try:
                sock.sendall(b"a")
                sock.settimeout(0.5)
                sock.recv(4096)  # end of stream, or the proxy's answer: either way the request is over
                closed_after = time.monotonic() - started
                break
            except TimeoutError:
                continue  # nothing said yet: keep trickling
            except OSError:  # reset by the proxy
                closed_after = time.monotonic() - started
                break
    assert closed_after is not None, "the proxy kept a trickling client"
    assert HEADER_TIMEOUT_S - 1 <= closed_after <= HEADER_TIMEOUT_S + 3, closed_after
