"""The local engine's aiohttp application: the two ElevenLabs endpoints a browser conversation needs.

* ``GET /v1/convai/conversation/get-signed-url?agent_id=…`` with header ``xi-api-key``: answers
  ``{"signed_url": "ws://…/v1/convai/conversation?agent_id=…&conversation_signature=…"}`` like
  ElevenLabs' REST API, so the channel's token endpoint can use the official SDK with
  ``base_url`` pointing here. The signature is single-use and expires.
* ``GET /v1/convai/conversation?…&conversation_signature=…``: the conversation WebSocket
  (subprotocol ``convai``), one :class:`~.engine.EngineSession` per connection.
* ``GET /healthz``.

The speech models load once, off the event loop, when the application starts.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import WSMsgType, web

from voice_channel.local_engine import convai
from voice_channel.local_engine.config import LocalEngineConfig
from voice_channel.local_engine.engine import EngineEvent, EngineSession, TurnMetrics
from voice_channel.local_engine.speech import SpeechModels, load_models

__all__ = ["ENGINE", "EngineState", "create_engine_app"]

log = structlog.get_logger("voice_channel.local_engine")

SIGNED_URL_PATH = "/v1/convai/conversation/get-signed-url"
CONVERSATION_PATH = "/v1/convai/conversation"
_INIT_TIMEOUT_S = 10.0


@dataclass
class EngineState:
    config: LocalEngineConfig
    models: SpeechModels | None = None
    owns_models: bool = True
    #: Unused signatures and when they expire.
    signatures: dict[str, float] = field(default_factory=dict)
    sessions: list[EngineSession] = field(default_factory=list)
    metrics: list[TurnMetrics] = field(default_factory=list)
    metrics_changed: asyncio.Event = field(default_factory=asyncio.Event)
    #: Every conversation's turn-taking steps, in order (see :class:`~.engine.EngineEvent`).
    events: list[EngineEvent] = field(default_factory=list)
    _events_changed: asyncio.Event = field(default_factory=asyncio.Event)

    def record(self, metrics: TurnMetrics) -> None:
        self.metrics.append(metrics)
        self.metrics_changed.set()

    def record_event(self, event: EngineEvent) -> None:
        self.events.append(event)
        self._events_changed.set()

    async def wait_event(self, kind: str, *, event_id: int | None = None, after: int = 0) -> tuple[int, EngineEvent]:
        """The first event of ``kind`` (for turn ``event_id``, if given) from index ``after`` on, and its index.

        Waits for it to happen; bound the wait with a timeout around the call.
        """
        index = after
        while True:
            while index < len(self.events):
                event = self.events[index]
                index += 1
                if event.kind == kind and (event_id is None or event.event_id == event_id):
                    return index - 1, event
            self._events_changed.clear()
            await self._events_changed.wait()


ENGINE = web.AppKey("local_engine", EngineState)


def create_engine_app(config: LocalEngineConfig, models: SpeechModels | None = None) -> web.Application:
    """Build the application; ``models`` lets several apps (tests) share one loaded set."""
    app = web.Application()
    app[ENGINE] = EngineState(config, models, owns_models=models is None)
    app.router.add_get(SIGNED_URL_PATH, get_signed_url)
    app.router.add_get(CONVERSATION_PATH, conversation)
    app.router.add_get("/healthz", healthz)
    app.cleanup_ctx.append(_models_context)
    app.on_shutdown.append(_close_sessions)
    return app


async def _models_context(app: web.Application) -> AsyncIterator[None]:
    state = app[ENGINE]
    if state.models is None:
        state.models = await asyncio.get_running_loop().run_in_executor(None, load_models, state.config)
    try:
        yield
    finally:
        if state.owns_models and state.models is not None:
            state.models.close()


async def _close_sessions(app: web.Application) -> None:
    for session in list(app[ENGINE].sessions):
        await session.close()


def _valid_key(request: web.Request, config: LocalEngineConfig) -> bool:
    given = request.headers.get("xi-api-key", "")
    return hmac.compare_digest(given.encode("utf-8"), config.api_key.get_secret_value().encode("utf-8"))


async def get_signed_url(request: web.Request) -> web.Response:
    state = request.app[ENGINE]
    if not _valid_key(request, state.config):
        return web.json_response({"detail": {"status": "invalid_api_key", "message": "Invalid API key"}}, status=401)
    agent_id = request.query.get("agent_id", "")
    if not agent_id:
        return web.json_response(
            {"detail": [{"loc": ["query", "agent_id"], "msg": "field required", "type": "value_error.missing"}]},
            status=422,
        )
    now = time.monotonic()
    for expired in [sig for sig, until in state.signatures.items() if until < now]:
        del state.signatures[expired]
    signature = secrets.token_urlsafe(24)
    state.signatures[signature] = now + state.config.signed_url_ttl_s
    base = state.config.public_url or f"{'wss' if request.secure else 'ws'}://{request.host}"
    url = f"{base.rstrip('/')}{CONVERSATION_PATH}?agent_id={_quote(agent_id)}&conversation_signature={signature}"
    return web.json_response({"signed_url": url})


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


async def conversation(request: web.Request) -> web.StreamResponse:
    state = request.app[ENGINE]
    signature = request.query.get("conversation_signature", "")
    until = state.signatures.pop(signature, None)
    if until is None or until < time.monotonic():
        return web.Response(status=403, text="invalid or expired conversation signature\n")
    if state.models is None:
        return web.Response(status=503, text="models still loading\n")
    ws = web.WebSocketResponse(protocols=(convai.SUBPROTOCOL,), max_msg_size=1 << 20)
    await ws.prepare(request)
    init = await _read_init(ws)
    if init is None:
        await ws.close(code=1008, message=b"expected conversation_initiation_client_data first")
        return ws
    conversation_id = f"conv_local_{secrets.token_hex(8)}"
    session = EngineSession(
        ws,
        state.models,
        state.config,
        conversation_id=conversation_id,
        init=init,
        on_metrics=state.record,
        on_event=state.record_event,
    )
    state.sessions.append(session)
    try:
        await session.run()
    finally:
        state.sessions.remove(session)
    return ws


async def _read_init(ws: web.WebSocketResponse) -> dict[str, Any] | None:
    try:
        message = await ws.receive(timeout=_INIT_TIMEOUT_S)
    except TimeoutError:
        return None
    if message.type is not WSMsgType.TEXT:
        return None
    try:
        data = json.loads(message.data)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("type") != "conversation_initiation_client_data":
        return None
    return data


async def healthz(request: web.Request) -> web.Response:
    state = request.app[ENGINE]
    ready = state.models is not None
    body: dict[str, Any] = {"status": "ok" if ready else "starting", "conversations": len(state.sessions)}
    if state.models is not None:
        body["tts"] = state.models.synthesizer.engine
        body["models"] = state.models.timings
    return web.json_response(body, status=200 if ready else 503)
