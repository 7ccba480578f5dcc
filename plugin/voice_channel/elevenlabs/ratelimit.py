"""A per-client rate limit (token bucket) and who the client is, also behind reverse proxies."""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable

from aiohttp import web

__all__ = ["IPV6_BUCKET_PREFIX", "RateLimiter", "TokenBucket", "bucket_key", "client_address"]

#: One IPv6 client is one /64: a host may use any address of its /64 (privacy addresses rotate in it).
IPV6_BUCKET_PREFIX = 64


class TokenBucket:
    """One client's bucket: ``rate_per_minute`` requests, refilled continuously, bursts up to the same number.

    What :class:`RateLimiter` keeps per key, for a caller with a single client (a conversation's own
    turn limit): a few floats instead of a keyed map, since one is held per open conversation.
    """

    __slots__ = ("_capacity", "_clock", "_last", "_per_second", "_tokens")

    def __init__(self, rate_per_minute: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._capacity = float(rate_per_minute)
        self._per_second = rate_per_minute / 60.0
        self._clock = clock
        self._tokens = self._capacity
        self._last = clock()

    def acquire(self) -> float | None:
        """Take one request: ``None`` if allowed, else seconds until the next is allowed."""
        now = self._clock()
        self._tokens, wait = _take(self._tokens, now - self._last, self._capacity, self._per_second)
        self._last = now
        return wait


class RateLimiter:
    """``rate_per_minute`` requests per key, refilled continuously, bursts up to the same number.

    Memory is bounded: at most ``max_clients`` keys are tracked, the least recently seen forgotten first (a
    forgotten client starts again with a full bucket, which only errs towards letting a request through).
    """

    def __init__(
        self, rate_per_minute: int, *, clock: Callable[[], float] = time.monotonic, max_clients: int = 10_000
    ) -> None:
        self._capacity = float(rate_per_minute)
        self._per_second = rate_per_minute / 60.0
        self._clock = clock
        self._max_clients = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, last refill)

    def acquire(self, key: str) -> float | None:
        """Take one request from ``key``'s bucket: ``None`` if allowed, else seconds until the next is allowed."""
        now = self._clock()
        tokens, last = self._buckets.pop(key, (self._capacity, now))
        tokens, wait = _take(tokens, now - last, self._capacity, self._per_second)
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self._max_clients:
            self._buckets.popitem(last=False)
        return wait


def _take(tokens: float, elapsed: float, capacity: float, per_second: float) -> tuple[float, float | None]:
    """One bucket's refill over ``elapsed`` seconds, then one request taken from it if there is a token:
    the tokens left, and ``None`` if allowed or else the seconds until the next request is allowed."""
    tokens = min(capacity, tokens + elapsed * per_second)
    if tokens >= 1.0:
        return tokens - 1.0, None
    return tokens, (1.0 - tokens) / per_second


def client_address(request: web.Request, trusted_proxy_hops: int) -> str:
    """The client's address: the TCP peer, or behind ``trusted_proxy_hops`` proxies the X-Forwarded-For entry
    that the outermost trusted proxy appended (entries further left can be forged by the client).
    """
    if trusted_proxy_hops > 0:
        hops = [part.strip() for value in request.headers.getall("X-Forwarded-For", []) for part in value.split(",")]
        hops = [hop for hop in hops if hop]
        if len(hops) >= trusted_proxy_hops:
            return _canonical(hops[-trusted_proxy_hops])
    return _canonical(request.remote or "unknown")


def bucket_key(address: str) -> str:
    """The rate-limit bucket of ``address`` (from :func:`client_address`): an IPv4 address, or an IPv6
    address's /64, which one host holds whole; anything else as it is."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/{IPV6_BUCKET_PREFIX}", strict=False))
    return address


def _canonical(address: str) -> str:
    """``address`` in one spelling: without a port a proxy may have appended (``1.2.3.4:5678``,
    ``[2001:db8::1]:5678``), an IPv4-mapped IPv6 address as IPv4, IPv6 compressed; not an address: as it is."""
    candidate = address
    if candidate.startswith("["):
        candidate = candidate[1:].partition("]")[0]
    elif candidate.count(":") == 1:
        candidate = candidate.partition(":")[0]
    try:
        ip = ipaddress.ip_address(candidate)
    except ValueError:
        return address
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip)
