"""``GET /api/token``: what a browser page needs to start an ElevenLabs conversation, without the API key.

Order of checks: the per-client rate limit (shared by all workers through Redis when ``redis.url`` is set, see
:mod:`voice_channel.elevenlabs.shared_ratelimit`), then the ``voice_channel_authorize_token`` hook (the built-in policy
is :mod:`voice_channel.default_plugins.token_policy`), then the configuration, then one SDK call. The answer is
JSON either way:

* WebRTC (``token.transport: webrtc``, the default): ``{"token": ..., "conversation_id": ...}``, plus
  ``livekit_url`` when one is configured. The page starts ``Conversation.startSession({conversationToken})``.
* WebSocket (``token.transport: websocket``): ``{"signed_url": ...}``; the page starts
  ``startSession({signedUrl, connectionType: "websocket"})``. A local stand-in of ElevenLabs' conversation
  service can be served this way (its signed URL points at it).
* Either may carry ``first_message`` (``ui.first_message``), only while the engine allows that override.
* Failures: ``{"error": "<plain words for the page>", "code": "<machine-readable>"}`` with a 4xx/5xx status.
  Upstream failures say what happened (``api.classify``), never ElevenLabs' own body.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web

from voice_channel.elevenlabs.api import MalformedResponse, classify, open_client, request_options
from voice_channel.elevenlabs.cors import cors_headers
from voice_channel.elevenlabs.ratelimit import RateLimiter, bucket_key, client_address
from voice_channel.elevenlabs.shared_ratelimit import RateLimitUnavailable
from voice_channel.serving.keys import TOKENS
from voice_channel.serving.metrics import NO_METRICS, Metrics

if TYPE_CHECKING:
    from elevenlabs import AsyncElevenLabs

    from voice_channel.elevenlabs.shared_ratelimit import SharedRateLimiter
    from voice_channel.plugins import PluginHooks
    from voice_channel.settings import Settings

__all__ = ["TokenService", "elevenlabs_client_context", "error_response", "token_endpoint"]

log = structlog.get_logger("voice_channel.tokens")

#: How long the engine's "first-message override allowed" flag is trusted before it is asked again.
OVERRIDE_CHECK_TTL_S = 60.0


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """The JSON error every failure of the token endpoint answers with."""
    return web.json_response(
        {"error": message, "code": code}, status=status, headers={"Cache-Control": "no-store", **(headers or {})}
    )


class TokenService:
    """The token endpoint's state: the SDK client (set while the app runs), the rate limiter, a small cache."""

    def __init__(self, settings: Settings, hooks: PluginHooks, metrics: Metrics = NO_METRICS) -> None:
        self.settings = settings
        self.hooks = hooks
        self.metrics = metrics
        #: This process's own limiter: the limit without Redis, the fallback with ``redis.on_error: open``.
        self.limiter = RateLimiter(settings.token.rate_per_minute)
        #: The limiter shared through Redis, set while the app runs when ``redis.url`` is configured.
        self.shared: SharedRateLimiter | None = None
        #: Set by :func:`elevenlabs_client_context` while the app runs, if an API key is configured.
        self.client: AsyncElevenLabs | None = None
        self._override_checked: tuple[bool, float] | None = None

    async def rate_limit(self, client: str) -> float | None:
        """``None`` if ``client`` may ask now, else seconds to wait. Raises ``RateLimitUnavailable`` (fail-closed).

        ``client`` is an address from ``client_address``; an IPv6 client is counted by its /64 (``bucket_key``).
        """
        key = bucket_key(client)
        if self.shared is not None:
            return await self.shared.acquire(key)
        return self.limiter.acquire(key)

    async def issue(self) -> dict[str, Any]:
        """Ask ElevenLabs for the page's credentials. SDK and HTTP errors propagate (see ``classify``)."""
        assert self.client is not None and self.settings.elevenlabs.speech_engine_id is not None
        engine_id = self.settings.elevenlabs.speech_engine_id
        conversations = self.client.conversational_ai.conversations
        options = request_options(self.settings)
        body: dict[str, Any]
        if self.settings.token.transport == "websocket":
            signed = await conversations.get_signed_url(agent_id=engine_id, request_options=options)
            if not isinstance(signed.signed_url, str) or not signed.signed_url.startswith(("wss://", "ws://")):
                raise MalformedResponse("no signed_url")
            body = {"signed_url": signed.signed_url}
        else:
            token = await conversations.get_webrtc_token(agent_id=engine_id, request_options=options)
            if not isinstance(token.token, str) or not token.token:
                raise MalformedResponse("no token")
            body = {"token": token.token}
            if isinstance(token.conversation_id, str):
                body["conversation_id"] = token.conversation_id
            if self.settings.elevenlabs.livekit_url is not None:
                body["livekit_url"] = self.settings.elevenlabs.livekit_url
        first_message = self.settings.ui.first_message
        if first_message is not None and await self._first_message_allowed():
            body["first_message"] = first_message
        return body

    async def _first_message_allowed(self) -> bool:
        """Whether the engine has the first-message override on (asked at most once a minute).

        Sending the override to an engine that does not allow it is undocumented behaviour at best, so the
        page gets ``first_message`` only after the engine said yes. A failed check answers no (logged).
        """
        now = time.monotonic()
        if self._override_checked is not None and now - self._override_checked[1] < OVERRIDE_CHECK_TTL_S:
            return self._override_checked[0]
        assert self.client is not None and self.settings.elevenlabs.speech_engine_id is not None
        try:
            engine = await self.client.speech_engine.get(
                self.settings.elevenlabs.speech_engine_id, request_options=request_options(self.settings)
            )
        except Exception as exc:
            failure = classify(exc)
            if failure is None:
                raise
            log.warning("first_message_check_failed", **failure.log_fields())
            return False
        overrides = getattr(engine.config, "overrides", None)
        allowed = getattr(overrides, "first_message", None) is True
        if not allowed:
            log.warning(
                "first_message_not_allowed",
                hint="ui.first_message is set but the engine does not allow the first-message override:"
                " run `voice-channel engine update --allow-first-message`",
            )
        self._override_checked = (allowed, now)
        return allowed


async def elevenlabs_client_context(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx``: one SDK client per app, its HTTP connections closed at shutdown."""
    service = app[TOKENS]
    if service.settings.elevenlabs.api_key is None:
        yield
        return
    async with open_client(service.settings) as client:
        service.client = client
        try:
            yield
        finally:
            service.client = None


async def token_endpoint(request: web.Request) -> web.Response:
    """``GET /api/token``: see the module's docstring; every answer carries its CORS headers (``cors``)."""
    response = await _token_answer(request)
    response.headers.update(cors_headers(request))
    return response


async def _token_answer(request: web.Request) -> web.Response:
    service = request.config_dict[TOKENS]
    settings = service.settings
    client = client_address(request, settings.server.trusted_proxy_hops)
    bound = log.bind(client=client)
    metrics = service.metrics
    try:
        wait = await service.rate_limit(client)
    except RateLimitUnavailable:
        metrics.token_request("limiter_unavailable")
        return error_response(
            503, "unavailable", "The voice server cannot take new conversations right now. Try again in a minute."
        )
    if wait is not None:
        bound.warning("token_rate_limited", retry_after_s=round(wait, 1))
        metrics.token_request("rate_limited")
        return error_response(
            429,
            "rate_limited",
            "Too many attempts from here. Wait a minute, then press Start again.",
            {"Retry-After": str(max(1, math.ceil(wait)))},
        )
    denied = await service.hooks.authorize_token(request)
    if denied is not None:
        bound.warning("token_denied", code=denied.code, reason=denied.reason)
        metrics.token_request("denied")
        headers = {"WWW-Authenticate": 'Bearer realm="voice-channel"'} if denied.status == 401 else None
        return error_response(denied.status, denied.code, denied.message, headers)
    if service.client is None:
        bound.error("token_not_configured", missing="elevenlabs.api_key")
        metrics.token_request("not_configured")
        return error_response(503, "not_configured", "The voice server is not set up yet: it has no ElevenLabs key.")
    if settings.elevenlabs.speech_engine_id is None:
        bound.error("token_not_configured", missing="elevenlabs.speech_engine_id")
        metrics.token_request("not_configured")
        return error_response(
            503, "not_configured", "The voice server is not set up yet: it has no Speech Engine configured."
        )
    try:
        body = await service.issue()
    except Exception as exc:
        failure = classify(exc)
        if failure is None:
            bound.exception("token_failed")
            metrics.token_request("error")
            return error_response(500, "internal", "The voice server failed to start a conversation.")
        bound.warning("token_upstream_failed", **failure.log_fields())
        metrics.token_request("upstream_failed")
        return error_response(failure.status, failure.kind, failure.message)
    metrics.token_request("issued")
    bound.info(
        "token_issued",
        transport=settings.token.transport,
        conversation_id=body.get("conversation_id"),
        first_message="first_message" in body,
    )
    return web.json_response(body, headers={"Cache-Control": "no-store"})
