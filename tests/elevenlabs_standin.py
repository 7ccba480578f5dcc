"""A local stand-in of the ElevenLabs REST API parts voice-channel uses, for tests (reusable by other suites).

Shaped after the ``elevenlabs`` 2.78 SDK's request and response types (``SpeechEngineResponse``,
``ListSpeechEnginesResponse``, ``TokenResponseModel``, ``ConversationSignedUrlResponseModel``) and the API's
documented defaults. The real SDK is pointed at it through its ``base_url`` (without ``/v1``)::

    server = await aiohttp_server(make_app(api_key))
    AsyncElevenLabs(api_key=api_key, base_url=str(server.make_url("")).rstrip("/"))

Endpoints (each needs the ``xi-api-key`` header):

    POST   /v1/speech-engine                        201 SpeechEngineResponse
    GET    /v1/speech-engine                        200 ListSpeechEnginesResponse (page_size, search, sort, cursor)
    GET    /v1/speech-engine/{id}                   200 SpeechEngineResponse (seng_X and agent_X: the same engine)
    PATCH  /v1/speech-engine/{id}                   200 SpeechEngineResponse (deep merge)
    DELETE /v1/speech-engine/{id}                   204
    GET    /v1/convai/conversation/token            200 {token, conversation_id}
    GET    /v1/convai/conversation/get-signed-url   200 {signed_url}

Plus, without the key (the browser calls it), ``GET /v1/convai/conversation``: the conversation WebSocket a signed
URL points at, reduced to the opening handshake and a scripted exchange (:attr:`Standin.script`): it accepts
subprotocol ``convai``, reads ``conversation_initiation_client_data``, answers
``conversation_initiation_metadata``, then sends the scripted events. No audio: enough for a page to connect and
show a transcript.

Test controls on ``app[STANDIN]``: ``requests`` (everything received), ``faults`` (answer the next matching
request with a given status and body, or never), ``engines``, ``signed_url_base``, ``script``, ``hang_up``,
``initiations``.
Choices marked [assumed] are the stand-in's, not verified against the live API.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

API_KEY_HEADER = "xi-api-key"
ID = re.compile(r"(seng|agent)_([A-Za-z0-9]+)")
SORT_BY = {"name", "created_at", "updated_at", "call_count_7d"}
OBJECT_KEYS = (
    "speech_engine",
    "asr",
    "tts",
    "turn",
    "conversation",
    "privacy",
    "call_limits",
    "auth",
    "overrides",
    "vad",
)
ALLOWED_KEYS = {*OBJECT_KEYS, "name", "language", "tags", "cascade_timeout_seconds"}


@dataclass
class Fault:
    """Answer the next matching request(s) with ``status``/``body`` instead of the handler.

    ``hang=True`` never answers (until the stand-in stops): for client timeouts.
    """

    method: str | None = None
    path: str | None = None  # regex searched in the request path
    status: int = 500
    body: Any = field(default_factory=lambda: {"detail": {"status": "internal_error", "message": "stand-in fault"}})
    times: int | None = 1  # None: every time
    hang: bool = False


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any


@dataclass
class Standin:
    api_key: str
    engines: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    #: Where signed URLs point; by default at this stand-in's own conversation WebSocket.
    signed_url_base: str | None = None
    #: Events the conversation WebSocket sends after its metadata (conversation WebSocket protocol frames).
    script: list[dict[str, Any]] = field(default_factory=list)
    #: Close the conversation WebSocket with this code after the script (``None``: wait for the page to hang up).
    hang_up: int | None = None
    #: ``conversation_initiation_client_data`` frames received, in order.
    initiations: list[dict[str, Any]] = field(default_factory=list)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    def calls(self, method: str, path_regex: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and re.search(path_regex, r.path)]


STANDIN = web.AppKey("elevenlabs_standin", Standin)


def _detail(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"detail": {"status": code, "message": message}}, status=status)


def _invalid(errors: list[dict[str, Any]]) -> web.Response:
    return web.json_response({"detail": errors}, status=422)


def _error(loc: list[str], msg: str, kind: str = "value_error") -> dict[str, Any]:
    return {"loc": loc, "msg": msg, "type": kind}


def _merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def canonical_id(raw: str) -> str | None:
    """``seng_X`` and ``agent_X`` name the same engine (a Speech Engine is an agent underneath)."""
    match = ID.fullmatch(raw)
    return f"seng_{match.group(2)}" if match else None


def engine_defaults(name: str, now: int) -> dict[str, Any]:
    """The API's documented defaults for a new Speech Engine."""
    return {
        "name": name,
        "speech_engine": {"ws_url": "", "request_headers": {}},
        "asr": {"quality": "high", "provider": "elevenlabs", "user_input_audio_format": "pcm_16000", "keywords": []},
        "tts": {
            "model_id": "eleven_flash_v2",
            "voice_id": "cjVigY5qzO86Huf0OWal",
            "agent_output_audio_format": "pcm_16000",
            "stability": 0.5,
            "speed": 1.0,
            "similarity_boost": 0.8,
            "text_normalisation_type": "system_prompt",
        },
        "turn": {
            "turn_timeout": 7.0,
            "initial_wait_time": None,
            "silence_end_call_timeout": -1.0,
            "turn_eagerness": "normal",
            "speculative_turn": False,
            "turn_model": "turn_v3",
        },
        "vad": {"background_voice_detection": False},
        "conversation": {"text_only": False, "max_duration_seconds": 600, "client_events": []},
        "privacy": {
            "record_voice": True,
            "retention_days": -1,
            "delete_transcript_and_pii": False,
            "delete_audio": False,
            "apply_to_existing_conversations": False,
            "zero_retention_mode": False,
        },
        "call_limits": {"agent_concurrency_limit": -1, "daily_limit": 100000, "bursting_enabled": True},
        "auth": {"enable_auth": False},
        "language": "en",
        "cascade_timeout_seconds": 4.0,  # observed default [assumed]
        "tags": [],
        "overrides": {"first_message": False},
        "metadata": {
            "created_at_unix_secs": now,
            "updated_at_unix_secs": now,
            "created_from": "api",
            "last_updated_from": "api",
        },
    }


#: The engine's ``turn`` fields and their allowed values, as the SDK's ``BaseTurnConfig`` (2.78) types them.
TURN_CHOICES = {
    "turn_eagerness": {"patient", "normal", "eager"},
    "spelling_patience": {"auto", "off"},
    "turn_model": {"turn_v2", "turn_v3"},
}
TURN_NUMBERS = {"turn_timeout", "initial_wait_time", "silence_end_call_timeout"}
TURN_FLAGS = {
    "speculative_turn",
    "retranscribe_on_turn_timeout",
    "merge_with_default_ignore_terms",
    "transcribe_on_disabled_interruptions",
}
TURN_LISTS = {"interruption_ignore_terms", "interruption_ignore_term_languages"}


def _validate_turn(turn: dict[str, Any]) -> list[dict[str, Any]]:
    errors = []
    for key, value in turn.items():
        loc = ["body", "turn", key]
        if key in TURN_CHOICES:
            if value not in TURN_CHOICES[key]:
                errors.append(_error(loc, f"Input should be one of {sorted(TURN_CHOICES[key])}", "enum"))
        elif key in TURN_NUMBERS:
            if isinstance(value, bool) or not isinstance(value, int | float):
                errors.append(_error(loc, "Input should be a valid number", "float_type"))
        elif key in TURN_FLAGS:
            if not isinstance(value, bool):
                errors.append(_error(loc, "Input should be a valid boolean", "bool_type"))
        elif key in TURN_LISTS:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                errors.append(_error(loc, "Input should be a valid list of strings", "list_type"))
        else:  # [assumed] strict, to catch typos in what we send
            errors.append(_error(loc, "Extra inputs are not permitted", "extra_forbidden"))
    return errors


def _validate(body: Any, *, creating: bool) -> list[dict[str, Any]]:
    if not isinstance(body, dict):
        return [_error(["body"], "Input should be a valid dictionary", "dict_type")]
    errors = []
    for key, value in body.items():
        if key not in ALLOWED_KEYS:  # [assumed] strict, to catch typos in what we send
            errors.append(_error(["body", key], "Extra inputs are not permitted", "extra_forbidden"))
        elif value is None:  # [assumed] the SDK sends None as JSON null; we never mean that
            errors.append(_error(["body", key], "Input should not be null", "none_forbidden"))
        elif key in OBJECT_KEYS and not isinstance(value, dict):
            errors.append(_error(["body", key], "Input should be a valid dictionary", "dict_type"))
    engine = body.get("speech_engine")
    if creating and engine is None:
        errors.append(_error(["body", "speech_engine"], "Field required", "missing"))
    if isinstance(engine, dict) and (creating or "ws_url" in engine):
        url = engine.get("ws_url")
        if not isinstance(url, str):
            errors.append(_error(["body", "speech_engine", "ws_url"], "Field required", "missing"))
        elif not url.startswith(("ws://", "wss://")):  # [assumed]
            errors.append(
                _error(["body", "speech_engine", "ws_url"], "URL scheme should be 'ws' or 'wss'", "url_scheme")
            )
    turn = body.get("turn")
    if isinstance(turn, dict):
        errors.extend(_validate_turn(turn))
    timeout = body.get("cascade_timeout_seconds")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 2 <= timeout <= 15
    ):
        errors.append(_error(["body", "cascade_timeout_seconds"], "Input should be between 2 and 15"))
    if "name" in body and body["name"] is not None and not isinstance(body["name"], str):
        errors.append(_error(["body", "name"], "Input should be a valid string", "string_type"))
    tags = body.get("tags")
    if tags is not None and (not isinstance(tags, list) or not all(isinstance(t, str) for t in tags)):
        errors.append(_error(["body", "tags"], "Input should be a valid list of strings", "list_type"))
    return errors


async def _body(request: web.Request) -> tuple[Any, web.Response | None]:
    raw = await request.read()
    if not raw:
        return None, None
    try:
        return json.loads(raw), None
    except ValueError:
        return None, _invalid([_error(["body"], "JSON decode error", "json_invalid")])


def _lookup(request: web.Request) -> tuple[str, web.Response | None]:
    raw = request.match_info["engine_id"]
    engine_id = canonical_id(raw)
    if engine_id is None or engine_id not in request.app[STANDIN].engines:
        return "", _detail(404, "not_found", f"Speech engine {raw} not found")  # [assumed] body shape
    return engine_id, None


@web.middleware
async def _record_and_authenticate(request: web.Request, handler: Any) -> web.StreamResponse:
    state = request.app[STANDIN]
    if request.path == "/v1/convai/conversation":  # the browser's WebSocket: authorised by its signed URL
        return await handler(request)
    raw = await request.read()
    try:
        parsed: Any = json.loads(raw) if raw else None
    except ValueError:
        parsed = raw.decode(errors="replace")
    state.requests.append(Recorded(request.method, request.path, dict(request.query), dict(request.headers), parsed))
    for fault in list(state.faults):
        if (fault.method in (None, request.method)) and (fault.path is None or re.search(fault.path, request.path)):
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    state.faults.remove(fault)
            if fault.hang:
                await state.stopping.wait()
            if isinstance(fault.body, bytes | str):
                return web.Response(status=fault.status, body=fault.body)
            return web.json_response(fault.body, status=fault.status)
    key = request.headers.get(API_KEY_HEADER)
    if key is None:
        return _detail(401, "needs_authorization", "Missing xi-api-key header")  # [assumed] code
    if not secrets.compare_digest(key.encode(), state.api_key.encode()):
        return _detail(401, "invalid_api_key", "Invalid API key")
    return await handler(request)


async def _create(request: web.Request) -> web.Response:
    state = request.app[STANDIN]
    body, bad = await _body(request)
    if bad is not None:
        return bad
    errors = _validate(body, creating=True)
    if errors:
        return _invalid(errors)
    engine_id = "seng_" + secrets.token_hex(12)
    engine = _merge(engine_defaults(body.get("name") or "Untitled", int(time.time())), body)
    engine["speech_engine_id"] = engine_id
    state.engines[engine_id] = engine
    return web.json_response(engine, status=201)


async def _get(request: web.Request) -> web.Response:
    engine_id, bad = _lookup(request)
    return bad or web.json_response(request.app[STANDIN].engines[engine_id])


async def _update(request: web.Request) -> web.Response:
    state = request.app[STANDIN]
    engine_id, bad = _lookup(request)
    if bad is not None:
        return bad
    body, bad = await _body(request)
    if bad is not None:
        return bad
    body = {} if body is None else body
    errors = _validate(body, creating=False)
    if errors:
        return _invalid(errors)
    engine = _merge(state.engines[engine_id], body)
    engine["metadata"]["updated_at_unix_secs"] = int(time.time())
    state.engines[engine_id] = engine
    return web.json_response(engine)


async def _delete(request: web.Request) -> web.Response:
    engine_id, bad = _lookup(request)
    if bad is not None:
        return bad
    del request.app[STANDIN].engines[engine_id]
    return web.Response(status=204)


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o{offset}".encode()).decode().rstrip("=")


def _offset(cursor: str) -> int | None:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        return int(text[1:]) if text.startswith("o") else None
    except ValueError:
        return None


async def _list(request: web.Request) -> web.Response:
    state = request.app[STANDIN]
    query = request.query
    errors = []
    page_size = 30
    if "page_size" in query:
        page_size = int(query["page_size"]) if query["page_size"].isdigit() else 0
        if not 1 <= page_size <= 100:
            errors.append(_error(["query", "page_size"], "Input should be between 1 and 100"))
    direction = query.get("sort_direction", "desc")
    if direction not in ("asc", "desc"):
        errors.append(_error(["query", "sort_direction"], "Input should be 'asc' or 'desc'", "enum"))
    sort_by = query.get("sort_by", "created_at")
    if sort_by not in SORT_BY:
        errors.append(_error(["query", "sort_by"], f"Input should be one of {sorted(SORT_BY)}", "enum"))
    offset = _offset(query["cursor"]) if "cursor" in query else 0
    if offset is None:
        errors.append(_error(["query", "cursor"], "Invalid cursor"))
    if errors:
        return _invalid(errors)
    assert offset is not None
    engines = list(state.engines.values())
    if query.get("search"):
        engines = [e for e in engines if query["search"].lower() in e["name"].lower()]
    keys = {
        "name": lambda e: e["name"].lower(),
        "created_at": lambda e: e["metadata"]["created_at_unix_secs"],
        "updated_at": lambda e: e["metadata"]["updated_at_unix_secs"],
        "call_count_7d": lambda e: 0,
    }
    engines.sort(key=lambda e: (keys[sort_by](e), e["speech_engine_id"]), reverse=direction == "desc")
    page = engines[offset : offset + page_size]
    more = offset + page_size < len(engines)
    summaries = [
        {
            "speech_engine_id": e["speech_engine_id"],
            "name": e["name"],
            "voice_id": e["tts"].get("voice_id") or "",
            "created_at_unix_secs": e["metadata"]["created_at_unix_secs"],
            "updated_at_unix_secs": e["metadata"]["updated_at_unix_secs"],
            "tags": list(e["tags"]),
            "access_info": {
                "is_creator": True,
                "creator_name": "Stand-in",
                "creator_email": "o@example.com",
                "role": "admin",
            },
        }
        for e in page
    ]
    return web.json_response(
        {"speech_engines": summaries, "next_cursor": _cursor(offset + page_size) if more else None, "has_more": more}
    )


def _agent(request: web.Request) -> tuple[str, web.Response | None]:
    agent_id = request.query.get("agent_id")
    if not agent_id:
        return "", _invalid([_error(["query", "agent_id"], "Field required", "missing")])
    engine_id = canonical_id(agent_id)
    if engine_id is None or engine_id not in request.app[STANDIN].engines:
        return "", _detail(404, "not_found", f"Agent {agent_id} not found")  # [assumed]
    return agent_id, None


async def _token(request: web.Request) -> web.Response:
    _, bad = _agent(request)
    if bad is not None:
        return bad
    conversation_id = "conv_" + secrets.token_hex(12)

    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    # The real token is a LiveKit JWT; this one only has its shape.
    token = ".".join([part({"alg": "HS256", "typ": "JWT"}), part({"room": conversation_id}), secrets.token_urlsafe(16)])
    return web.json_response({"token": token, "conversation_id": conversation_id})


async def _signed_url(request: web.Request) -> web.Response:
    agent_id, bad = _agent(request)
    if bad is not None:
        return bad
    state = request.app[STANDIN]
    base = state.signed_url_base or str(
        request.url.with_scheme("ws").with_path("/v1/convai/conversation").with_query(None)
    )
    url = f"{base}?agent_id={agent_id}&conversation_signature={secrets.token_urlsafe(24)}"
    if request.query.get("include_conversation_id") == "true":
        url += "&conversation_id=conv_" + secrets.token_hex(12)
    return web.json_response({"signed_url": url})


async def _conversation(request: web.Request) -> web.WebSocketResponse:
    """The browser's conversation WebSocket, reduced to the handshake and a scripted exchange."""
    state = request.app[STANDIN]
    ws = web.WebSocketResponse(protocols=("convai",))
    await ws.prepare(request)
    first = await ws.receive()
    if first.type == WSMsgType.TEXT:
        state.initiations.append(json.loads(first.data))
        await ws.send_json(
            {
                "type": "conversation_initiation_metadata",
                "conversation_initiation_metadata_event": {
                    "conversation_id": "conv_" + secrets.token_hex(12),
                    "agent_output_audio_format": "pcm_16000",
                    "user_input_audio_format": "pcm_16000",
                },
            }
        )
        for event in state.script:
            await ws.send_json(event)
        if state.hang_up is not None:
            await ws.close(code=state.hang_up, message=b"stand-in hangs up")
            return ws
        async for _message in ws:  # microphone audio and pongs until the page hangs up
            pass
    return ws


async def _stop(app: web.Application) -> None:
    app[STANDIN].stopping.set()


def make_app(api_key: str) -> web.Application:
    """The stand-in application; its state is ``app[STANDIN]``."""
    app = web.Application(middlewares=[_record_and_authenticate])
    app[STANDIN] = Standin(api_key=api_key)
    app.on_shutdown.append(_stop)
    app.router.add_post("/v1/speech-engine", _create)
    app.router.add_get("/v1/speech-engine", _list)
    app.router.add_get("/v1/speech-engine/{engine_id}", _get)
    app.router.add_patch("/v1/speech-engine/{engine_id}", _update)
    app.router.add_delete("/v1/speech-engine/{engine_id}", _delete)
    app.router.add_get("/v1/convai/conversation/token", _token)
    app.router.add_get("/v1/convai/conversation/get-signed-url", _signed_url)
    app.router.add_get("/v1/convai/conversation", _conversation)
    return app


def transcript_script(user: str, agent: str) -> list[dict[str, Any]]:
    """Conversation-protocol events for one exchange: what the caller said, what the agent answered."""
    return [
        {"type": "user_transcript", "user_transcription_event": {"user_transcript": user, "event_id": 1}},
        {"type": "agent_response", "agent_response_event": {"agent_response": agent, "event_id": 1}},
    ]
