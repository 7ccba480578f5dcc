"""Liveness and readiness: ``/livez``, ``/readyz`` and the older ``/healthz``.

* ``/livez`` answers 200 while the process serves HTTP at all (a liveness probe restarts a process
  that stops answering it, nothing more).
* ``/readyz`` answers 200 only when a new conversation would get a reply: the runtime has started,
  says it can take a turn (:func:`runtime_not_ready`), and the server is not shutting down or
  draining. Otherwise 503 with the reason. The Speech Engine endpoint refuses the upgrade with 503
  for the same reasons, so a load balancer and ElevenLabs see one rule.
* ``/healthz`` is kept for existing probes and means the same as ``/readyz``.
* ``/status`` is for the operator: version, runtime, open conversations, uptime and readiness, only
  to a request with ``Authorization: Bearer <status.bearer_secret>`` (compared in constant time).
  Without that setting, or without the right secret, it answers 404, as if it did not exist: a
  scanner learns nothing, not even that there is something to guess.

None of the first three shows version, runtime or load to an anonymous caller.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from aiohttp import web

from voice_channel import __version__
from voice_channel.channel.auth import bearer_credential, secret_matches
from voice_channel.serving.keys import STATE

if TYPE_CHECKING:
    from voice_channel.serving.keys import ChannelState

__all__ = ["HEALTH_PATHS", "add_health_routes", "not_ready_reason", "runtime_not_ready"]

#: Paths these routes take; the Speech Engine endpoint cannot use them.
HEALTH_PATHS = frozenset({"/livez", "/readyz", "/healthz", "/status"})


def runtime_not_ready(runtime: object) -> str | None:
    """Why ``runtime`` cannot take a turn now, or ``None`` when it can.

    A runtime may implement ``readiness() -> str | None`` (synchronous, cheap: it is called on every
    probe and every handshake); one that does not is ready once started.
    """
    readiness = getattr(runtime, "readiness", None)
    return readiness() if callable(readiness) else None


def not_ready_reason(state: ChannelState) -> str | None:
    """Why this server should not take a new conversation now, or ``None`` when it should."""
    if state.shutting_down:
        return "shutting down"
    if state.draining:
        return "draining"
    if state.runtime is None:
        return "runtime starting"
    return runtime_not_ready(state.runtime)


def add_health_routes(app: web.Application) -> None:
    """Register ``/livez``, ``/readyz`` and ``/healthz`` on ``app``."""
    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/healthz", readyz)
    app.router.add_get("/status", status)


async def livez(request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"})


async def readyz(request: web.Request) -> web.Response:
    reason = not_ready_reason(request.config_dict[STATE])
    if reason is None:
        return web.json_response({"status": "ok"})
    return web.json_response({"status": "not_ready", "reason": reason}, status=503)


async def status(request: web.Request) -> web.Response:
    state = request.config_dict[STATE]
    secret = state.settings.status.bearer_secret
    if secret is None or not secret_matches(bearer_credential(request.headers), secret):
        raise web.HTTPNotFound()
    reason = not_ready_reason(state)
    return web.json_response(
        {
            "status": "ok" if reason is None else "not_ready",
            "reason": reason,
            "version": __version__,
            "runtime": state.runtime_entry.name,
            "conversations": len(state.conversations),
            "uptime_s": round(time.time() - state.started_at, 1),
        },
        headers={"Cache-Control": "no-store"},
    )
