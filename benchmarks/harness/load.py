"""Load generation with wrk (Debian's package), parsed into throughput and latency percentiles."""

from __future__ import annotations

import json
import re
import shutil
import statistics
import subprocess
from typing import Any

from benchmarks.harness.common import WORK

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    match = re.match(r"([\d.]+)(us|ms|s)", text)
    if not match:
        return float("nan")
    return float(match[1]) * _UNITS[match[2]]


def wrk(url: str, body: dict[str, Any] | list[Any], connections: int, seconds: int) -> dict[str, float]:
    """One wrk run POSTing a JSON body; requests/s, p50 and p99 latency (ms), errors."""
    return wrk_raw(url, json.dumps(body).encode(), "application/json", connections, seconds)


def multipart(
    field: str, filename: str, data: bytes, content_type: str, fields: dict[str, str] | None = None
) -> tuple[bytes, str]:
    """A multipart/form-data body with one file part and then one text part per ``fields`` entry,
    and its Content-Type header."""
    boundary = "bungabenchboundary7d3f"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode()
    texts = "".join(
        f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}' for k, v in (fields or {}).items()
    )
    return head + data + f"{texts}\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def wrk_raw(url: str, body: bytes, content_type: str, connections: int, seconds: int) -> dict[str, float]:
    """One wrk run POSTing ``body`` (read by the Lua script from a file, so binary bodies work);
    requests/s, p50 and p99 latency (ms), errors."""
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed: apt-get install wrk")
    WORK.mkdir(parents=True, exist_ok=True)
    body_file, script = WORK / "post.body", WORK / "post.lua"
    body_file.write_bytes(body)
    script.write_text(
        f'local f = assert(io.open("{body_file}", "rb"))\nwrk.body = f:read("*all")\nf:close()\n'
        f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "{content_type}"\n'
    )
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "30s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out)[1])  # type: ignore[index]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out)[1])  # type: ignore[index]
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    n_err = int(errors[1]) if errors else 0
    if socket_errors:
        n_err += sum(int(x) for x in socket_errors.groups())
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99, "errors": n_err}


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    """Per-metric medians of repeated runs, with every run's errors added up: a series with any error
    is not a valid throughput figure (the report marks it so instead of comparing with it)."""
    medians = {k: statistics.median(r[k] for r in runs) for k in runs[0] if k != "errors"}
    return medians | {"errors": sum(r["errors"] for r in runs), "repeats": len(runs)}
