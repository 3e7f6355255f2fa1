"""Abuse limits on the public endpoints: per-client token buckets and the feedback inbox's quota.

Both live in each worker process: with N workers a client gets at most N times its rate (the
buckets are per worker), and the quota is re-read from disk every few seconds, so all workers and
replicas sharing the inbox see one another's uploads within that time.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import OrderedDict
from pathlib import Path

from fastapi import HTTPException
from starlette.requests import Request

from bunga import inbox

MAX_CLIENTS = 50_000  # buckets kept per worker; the least recently seen client is forgotten first


class TokenBuckets:
    """One token bucket per client key: ``rate_per_min`` tokens a minute, at most ``burst`` saved."""

    def __init__(self, rate_per_min: float, burst: int) -> None:
        self.rate = rate_per_min / 60.0
        self.burst = float(burst)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, when)
        self._lock = threading.Lock()

    def take(self, key: str) -> float | None:
        """Spend one token; None when allowed, else the seconds until a token is free."""
        now = time.monotonic()
        with self._lock:
            tokens, when = self._buckets.pop(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - when) * self.rate)
            allowed = tokens >= 1.0
            self._buckets[key] = (tokens - 1.0 if allowed else tokens, now)
            if len(self._buckets) > MAX_CLIENTS:
                self._buckets.popitem(last=False)
        return None if allowed else (1.0 - tokens) / self.rate


def buckets(rate_per_min: float, burst: int) -> TokenBuckets | None:
    """Buckets for a rate limit, or None when the limit is off (rate 0)."""
    return TokenBuckets(rate_per_min, burst) if rate_per_min > 0 else None


def _networks(trusted: list[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(t.strip(), strict=False) for t in trusted if t.strip()]


def _is_in(address: str, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in net for net in networks)


class ClientAddress:
    """The client's address: the direct peer, or the nearest untrusted hop of ``X-Forwarded-For``
    when the peer is a trusted proxy (a client cannot pick its own address by sending the header)."""

    def __init__(self, trusted_proxies: list[str]) -> None:
        self.trusted = _networks(trusted_proxies)

    def __call__(self, request: Request) -> str:
        peer = request.client.host if request.client else "unknown"
        if not _is_in(peer, self.trusted):
            return peer
        hops = [h.strip() for h in request.headers.get("x-forwarded-for", "").split(",") if h.strip()]
        for hop in reversed(hops):
            if not _is_in(hop, self.trusted):
                return hop[:64]
        return peer


class InboxQuota:
    """Total bytes and files the feedback inbox may hold; usage re-read from disk every few seconds."""

    def __init__(self, folder: Path, max_bytes: int, max_files: int, refresh_s: float = 5.0) -> None:
        self.folder, self.max_bytes, self.max_files, self.refresh_s = folder, max_bytes, max_files, refresh_s
        self._usage: tuple[int, int] = (0, 0)
        self._read_at = float("-inf")
        self._lock = threading.Lock()

    def usage(self) -> tuple[int, int]:
        """(bytes, files) in the inbox (at most ``refresh_s`` old, plus what this worker added)."""
        with self._lock:
            if time.monotonic() - self._read_at >= self.refresh_s:
                self._usage, self._read_at = inbox.usage(self.folder), time.monotonic()
            return self._usage

    def refusal(self, nbytes: int, nfiles: int) -> str | None:
        """Why storing ``nbytes`` in ``nfiles`` more files would go over the quota, or None."""
        used, files = self.usage()
        if used + nbytes > self.max_bytes:
            return f"the feedback inbox is full ({used:,} of {self.max_bytes:,} bytes used)"
        if files + nfiles > self.max_files:
            return f"the feedback inbox is full ({files:,} of {self.max_files:,} files)"
        return None

    def add(self, nbytes: int, nfiles: int) -> None:
        """Count what this worker just stored (until the next re-read sees it on disk)."""
        with self._lock:
            self._usage = (self._usage[0] + nbytes, self._usage[1] + nfiles)


def check_rate(request: Request, buckets: TokenBuckets | None, reason: str) -> None:
    """429 with Retry-After when this client has spent its tokens (counted under ``reason``)."""
    if buckets is None:
        return
    state = request.app.state
    wait = buckets.take(state.client_address(request))
    if wait is not None:
        state.metrics.rejected.labels(reason).inc()
        seconds = max(1, int(wait + 0.999))
        raise HTTPException(
            429, f"too many requests from this address: try again in {seconds} s", headers={"Retry-After": str(seconds)}
        )
