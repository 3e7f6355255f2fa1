"""Abuse limits on the public endpoints: per-client token buckets (the inbox's quota is in
bunga.garden.quota and bunga.garden.inbox).

The buckets live in each worker process: with N workers a client gets at most N times its rate.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import OrderedDict

from fastapi import HTTPException
from starlette.requests import Request

MAX_CLIENTS = 50_000  # buckets kept per worker; the least recently seen client is forgotten first


class TokenBuckets:
    """One token bucket per client key: ``rate_per_min`` tokens a minute, at most ``burst`` saved."""

    def __init__(self, rate_per_min: float, burst: int) -> None:
        self.rate = rate_per_min / 60.0
        self.burst = float(burst)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, when)
        self._lock = threading.Lock()

    def take(self, key: str, cost: float = 1.0) -> float | None:
        """Spend ``cost`` tokens; None when allowed, else the seconds until that many are saved (a cost
        above the burst is never allowed: the wait is then for a full bucket)."""
        now = time.monotonic()
        with self._lock:
            tokens, when = self._buckets.pop(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - when) * self.rate)
            allowed = tokens >= cost
            self._buckets[key] = (tokens - cost if allowed else tokens, now)
            if len(self._buckets) > MAX_CLIENTS:
                self._buckets.popitem(last=False)
        return None if allowed else (min(cost, self.burst) - tokens) / self.rate

    def waiting(self, key: str) -> float | None:
        """The seconds until ``key`` has a token again (nothing spent), or None when it has one."""
        now = time.monotonic()
        with self._lock:
            tokens, when = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - when) * self.rate)
        return None if tokens >= 1.0 else (1.0 - tokens) / self.rate


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


def too_many(request: Request, seconds: float, reason: str, what: str) -> HTTPException:
    """429 with Retry-After (counted under ``reason``)."""
    request.app.state.metrics.rejected.labels(reason).inc()
    wait = max(1, int(seconds + 0.999))
    return HTTPException(
        429, f"too many {what} from this address: try again in {wait} s", headers={"Retry-After": str(wait)}
    )


def check_rate(
    request: Request, buckets: TokenBuckets | None, reason: str, cost: float = 1.0, what: str = "requests"
) -> None:
    """429 with Retry-After when this client has spent its tokens (counted under ``reason``); ``cost``
    is what this request spends (a request, a record, a byte), ``what`` names it in the message."""
    if buckets is None:
        return
    wait = buckets.take(request.app.state.client_address(request), cost)
    if wait is not None:
        raise too_many(request, wait, reason, what)
