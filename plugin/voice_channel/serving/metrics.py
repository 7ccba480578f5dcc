"""Prometheus metrics: what the server counts, and ``/metrics`` where it is read.

Instrumented code calls a :class:`Metrics` (one small method per event, no labels to build); with
``metrics.enabled`` off it gets :data:`NO_METRICS`, whose methods do nothing. The work per turn
is two histogram observations and a counter (measured in ``bench/first_chunk.py --metrics``).

* ``voice_channel_conversations_open`` (gauge) and ``voice_channel_conversations_total``
* ``voice_channel_turns_total``, ``voice_channel_interruptions_total``
* ``voice_channel_first_chunk_seconds`` (transcript read → first chunk written, the filler
  included) and ``voice_channel_turn_seconds`` (→ ``is_final``), histograms
* all of these by ``runtime``;
* ``voice_channel_superseded_chunks_dropped_total`` (counted when the conversation ends)
* ``voice_channel_confirmations_total{outcome="asked|approved|denied|timed_out"}``
* ``voice_channel_auth_refusals_total{reason}``, ``voice_channel_token_requests_total{outcome}``

**Several processes** (gunicorn): prometheus-client's multiprocess mode, switched on by
``PROMETHEUS_MULTIPROC_DIR`` being set *before* the workers start (``voice_channel.gunicorn_conf``
sets, wipes and cleans it). Each worker writes its own files there and ``/metrics``, whichever
worker answers it, adds them up; the open-conversations gauge counts live workers only.

**Who may read it**: ``/metrics`` shows load and usage, which an anonymous caller must not see
(the same reason ``/readyz`` shows no details). It answers only peers in
``metrics.allowed_networks`` (loopback by default: a Prometheus or an agent on the same host or
in the same pod) and refuses anything that came through a proxy (an ``X-Forwarded-For`` or
``Forwarded`` header), since behind nginx every request's peer is loopback. Others get 404.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web

__all__ = ["METRICS_PATH", "NO_METRICS", "Metrics", "PrometheusMetrics", "metrics_endpoint"]

METRICS_PATH: Final = "/metrics"

#: Seconds; the first chunk is milliseconds with a fast runtime, seconds with a model behind it.
FIRST_CHUNK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
TURN_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class Metrics:
    """What instrumented code reports. This base class records nothing (``metrics.enabled: false``)."""

    __slots__ = ()

    def conversation_opened(self, runtime: str) -> None:
        """A conversation's WebSocket was accepted."""

    def conversation_closed(self, runtime: str, superseded_dropped: int) -> None:
        """It ended; ``superseded_dropped`` chunks of superseded turns were never sent."""

    def turn_started(self, runtime: str) -> None:
        """A transcript opened a new turn."""

    def first_chunk(self, runtime: str, seconds: float) -> None:
        """A turn's first chunk was written ``seconds`` after its transcript was read."""

    def turn_finished(self, runtime: str, seconds: float) -> None:
        """A turn's ``is_final`` was written ``seconds`` after its transcript was read."""

    def interruption(self, runtime: str) -> None:
        """A newer transcript superseded a turn that was still speaking."""

    def confirmation(self, outcome: str) -> None:
        """A confirmation was ``asked``, ``approved``, ``denied`` or ``timed_out``."""

    def auth_refused(self, reason: str) -> None:
        """A WebSocket handshake was refused (401)."""

    def token_request(self, outcome: str) -> None:
        """``/api/token`` answered: ``issued``, ``rate_limited``, ``denied``... (see the token endpoint)."""


NO_METRICS: Final = Metrics()


class PrometheusMetrics(Metrics):
    """Records into prometheus-client's process-wide registry (created once per process).

    The labelled series of a runtime are looked up once and kept (``labels()`` costs more than the
    observation itself, and a process serves one runtime).
    """

    __slots__ = ("_m", "_series")

    def __init__(self) -> None:
        self._m = _instruments()
        self._series: dict[str, _Series] = {}

    def _of(self, runtime: str) -> _Series:
        series = self._series.get(runtime)
        if series is None:
            series = self._series[runtime] = _Series(self._m, runtime)
        return series

    def conversation_opened(self, runtime: str) -> None:
        series = self._of(runtime)
        series.open.inc()
        series.conversations.inc()

    def conversation_closed(self, runtime: str, superseded_dropped: int) -> None:
        self._of(runtime).open.dec()
        if superseded_dropped:
            self._m.dropped.inc(superseded_dropped)

    def turn_started(self, runtime: str) -> None:
        self._of(runtime).turns.inc()

    def first_chunk(self, runtime: str, seconds: float) -> None:
        self._of(runtime).first_chunk.observe(seconds)

    def turn_finished(self, runtime: str, seconds: float) -> None:
        self._of(runtime).turn.observe(seconds)

    def interruption(self, runtime: str) -> None:
        self._of(runtime).interruptions.inc()

    def confirmation(self, outcome: str) -> None:
        self._m.confirmations.labels(outcome).inc()

    def auth_refused(self, reason: str) -> None:
        self._m.auth_refusals.labels(reason).inc()

    def token_request(self, outcome: str) -> None:
        self._m.token_requests.labels(outcome).inc()


class _Series:
    """One runtime's labelled children of the per-runtime metrics."""

    __slots__ = ("conversations", "first_chunk", "interruptions", "open", "turn", "turns")

    def __init__(self, m: _Instruments, runtime: str) -> None:
        self.open = m.open.labels(runtime)
        self.conversations = m.conversations.labels(runtime)
        self.turns = m.turns.labels(runtime)
        self.first_chunk = m.first_chunk.labels(runtime)
        self.turn = m.turn.labels(runtime)
        self.interruptions = m.interruptions.labels(runtime)


class _Instruments:
    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.open = Gauge(
            "voice_channel_conversations_open",
            "Conversations open now.",
            ["runtime"],
            multiprocess_mode="livesum",
        )
        self.conversations = Counter("voice_channel_conversations", "Conversations accepted.", ["runtime"])
        self.turns = Counter("voice_channel_turns", "Turns started by a transcript.", ["runtime"])
        self.first_chunk = Histogram(
            "voice_channel_first_chunk_seconds",
            "From a transcript read to the turn's first chunk written.",
            ["runtime"],
            buckets=FIRST_CHUNK_BUCKETS,
        )
        self.turn = Histogram(
            "voice_channel_turn_seconds",
            "From a transcript read to the turn's is_final written.",
            ["runtime"],
            buckets=TURN_BUCKETS,
        )
        self.interruptions = Counter(
            "voice_channel_interruptions", "Turns superseded while still speaking.", ["runtime"]
        )
        self.dropped = Counter(
            "voice_channel_superseded_chunks_dropped", "Chunks of superseded turns that were never sent."
        )
        self.confirmations = Counter("voice_channel_confirmations", "Spoken confirmations by outcome.", ["outcome"])
        self.auth_refusals = Counter("voice_channel_auth_refusals", "WebSocket handshakes refused.", ["reason"])
        self.token_requests = Counter("voice_channel_token_requests", "Token endpoint answers by outcome.", ["outcome"])


_INSTRUMENTS: _Instruments | None = None


def _instruments() -> _Instruments:
    # prometheus-client registers every metric in one process-wide registry, once.
    global _INSTRUMENTS
    if _INSTRUMENTS is None:
        _INSTRUMENTS = _Instruments()
    return _INSTRUMENTS


def _came_through_proxy(request: web.Request) -> bool:
    return "X-Forwarded-For" in request.headers or "Forwarded" in request.headers


def _peer_allowed(request: web.Request, networks: list[str]) -> bool:
    try:
        peer = ipaddress.ip_address(request.remote or "")
    except ValueError:
        return False
    if isinstance(peer, ipaddress.IPv6Address) and peer.ipv4_mapped is not None:  # IPv4 on a dual-stack [::]
        peer = peer.ipv4_mapped
    return any(peer in ipaddress.ip_network(net, strict=False) for net in networks)


def render() -> tuple[bytes, str]:
    """The exposition of this process, or of all workers in multiprocess mode; and its content type."""
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def metrics_endpoint(allowed_networks: list[str]) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The ``/metrics`` handler: the exposition for a direct peer in ``allowed_networks``, else 404."""

    async def endpoint(request: web.Request) -> web.Response:
        if _came_through_proxy(request) or not _peer_allowed(request, allowed_networks):
            raise web.HTTPNotFound()
        body, content_type = render()
        return web.Response(body=body, headers={"Content-Type": content_type, "Cache-Control": "no-store"})

    return endpoint
