"""No secret reaches a log line: every error path we can reach, with secrets planted in what comes in and in
what upstream servers answer, through the real configured renderers (console and JSON), tracebacks included."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import secrets
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from elevenlabs_standin import Fault
from raw_http import raw_request, upgrade_request
from support import ScriptedPlugin, barrier, get_token
from voice_channel import hookimpl
from voice_channel.channel.auth import JWT_HEADER
from voice_channel.elevenlabs.client import sign_speech_engine_jwt
from voice_channel.logging import REDACTED, setup_logging
from voice_channel.serving.keys import TOKENS
from voice_channel_openai import plugin as openai_plugin

SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin"}


class Planted:
    """One of each secret setting; two of them with characters that JSON and repr() escape."""

    def __init__(self, api_key: str) -> None:
        self.api_key = api_key
        self.header_secret = f'hs-"quoted"-{secrets.token_hex(8)}'
        self.bearer_secret = f"bearer-{secrets.token_hex(8)}"
        self.status_secret = f"status-{secrets.token_hex(8)}"
        self.openai_key = f"sk-openai-\\{secrets.token_hex(8)}"

    def all(self) -> list[str]:
        return [self.api_key, self.header_secret, self.bearer_secret, self.status_secret, self.openai_key]

    def leaks(self, text: str) -> list[str]:
        """Every secret found in ``text``, as is or escaped the way JSON or repr() would write it."""
        found = []
        for secret in self.all():
            inner = repr(secret)[1:-1]
            forms = {secret, inner, json.dumps(secret)[1:-1], json.dumps(inner)[1:-1]}
            found.extend(f"{secret[:6]}... as {form[:12]!r}..." for form in forms if form in text)
        return found


def planted_upstream(planted: Planted) -> web.Application:
    """An OpenAI-compatible server that fails, echoing what it was sent (the key included)."""

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        said = body["messages"][-1]["content"]
        echo = f"bad credentials {request.headers.get('Authorization')} {planted.api_key}"
        if "unauthorized" in said:
            return web.json_response({"error": {"message": echo}}, status=401)
        if "midstream" in said:
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            chunk = {"choices": [{"delta": {"content": "Partial "}, "index": 0}]}
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
            await response.write(f"data: {json.dumps({'error': {'message': echo}})}\n\n".encode())
            return response
        return web.Response(text=f"<html>{echo}</html>", content_type="text/html")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    return app


class FailingHooks:
    """A plugin whose token hook fails with the key in its message and in a local variable."""

    def __init__(self, planted: Planted) -> None:
        self.planted = planted

    @hookimpl
    def voice_channel_authorize_token(self, request):
        key_seen = self.planted.api_key  # a local holding the secret, as any client code has
        if request.query.get("fail") == "hook":
            raise RuntimeError(f"policy backend rejected {key_seen} / {self.planted.bearer_secret}")
        return None


def failing_runtime(planted: Planted):
    async def behaviour(message, recorder):
        secret_local = planted.openai_key  # noqa: F841 - what a traceback with locals would print
        yield "Working "
        raise ConnectionError(f"upstream answered 401: invalid key {planted.api_key} and {planted.openai_key}")

    return behaviour


@pytest.fixture
def output(request) -> Any:
    """Restore the root logger after a test that configured it."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize("fmt", ["json", "console"])
async def test_no_log_line_contains_a_secret_on_any_error_path(start_channel, elevenlabs, api_key, fmt, output):
    planted = Planted(api_key)
    upstream = TestServer(planted_upstream(planted), host="127.0.0.1")
    await upstream.start_server()
    engine_id = elevenlabs.add_engine()
    common = {
        "log_format": fmt,
        "auth": {"header_secret": planted.header_secret},
        "token": {"bearer_secret": planted.bearer_secret, "rate_per_minute": 1000},
        "status": {"bearer_secret": planted.status_secret},
        "elevenlabs": elevenlabs.settings(speech_engine_id=engine_id, timeout_s=0.5),
        "openai": {"api_key": planted.openai_key, "base_url": str(upstream.make_url("/v1"))},
    }
    scripted = ScriptedPlugin(failing_runtime(planted))
    channel = await start_channel(
        plugins=[scripted, FailingHooks(planted), openai_plugin], runtime="scripted", **common
    )
    openai = await start_channel(plugins=[openai_plugin], runtime="openai", **common)
    stream = io.StringIO()
    setup_logging(channel.settings, level="debug", stream=stream, cache=False)
    signed = {JWT_HEADER: sign_speech_engine_jwt(api_key), "x-voice-channel-secret": planted.header_secret}

    # --- the token endpoint: upstream failures echoing the key, a failing hook, an unexpected error ------
    ok = {**SAME_ORIGIN, "Authorization": f"Bearer {planted.bearer_secret}"}
    for fault in (
        Fault(status=500, body=api_key),
        Fault(status=401, body={"detail": {"message": f"invalid api key {api_key}"}}),
        Fault(status=422, body={"detail": [{"loc": ["query", "agent_id"], "msg": api_key, "input": api_key}]}),
        Fault(status=200, body=f"<html>{api_key}</html>"),
        Fault(hang=True),
    ):
        fault.path = "token"
        elevenlabs.state.faults.append(fault)
        assert (await get_token(channel, ok))[0] >= 500
    await get_token(channel, {**SAME_ORIGIN, "Authorization": f"Bearer {planted.bearer_secret}x"})
    await get_token(channel, {**SAME_ORIGIN, "Authorization": f"Bearer {planted.header_secret}"})
    async with aiohttp.ClientSession() as session:
        async with session.get(channel.server.make_url("/api/token?fail=hook"), headers=ok) as response:
            assert response.status == 403  # a failing plugin hook denies

    service = channel.app[TOKENS]

    async def issue_failing() -> dict:
        credentials = (api_key, planted.openai_key)  # noqa: F841 - locals a traceback would print
        raise KeyError(f"unexpected SDK state for keys {api_key} {planted.openai_key}")  # KeyError repr()s it

    service.issue = issue_failing
    assert (await get_token(channel, ok))[0] == 500

    # --- bad handshakes: secrets where they do not belong, near misses, bytes that are not UTF-8 ------------
    async with aiohttp.ClientSession() as session:
        for headers in (
            {JWT_HEADER: api_key, "x-voice-channel-secret": planted.header_secret},
            {JWT_HEADER: sign_speech_engine_jwt(planted.openai_key), "x-voice-channel-secret": planted.header_secret},
            {**signed, "x-voice-channel-secret": planted.header_secret + "x"},
            {JWT_HEADER: planted.header_secret},
        ):
            with pytest.raises(aiohttp.WSServerHandshakeError):
                await session.ws_connect(channel.url, headers=headers)
        for path, headers in (("/status", {"Authorization": f"Bearer {planted.status_secret}x"}),):
            async with session.get(channel.server.make_url(path), headers=headers) as response:
                assert response.status == 404
    jwt_line = f"{JWT_HEADER}: {sign_speech_engine_jwt(api_key)}\r\n".encode()
    for value in (planted.header_secret.encode() + b"\xff", b"\xfe" + api_key.encode()):
        status, _ = await raw_request(
            channel.server.port, upgrade_request("/ws", jwt_line + b"x-voice-channel-secret: " + value + b"\r\n")
        )
        assert status == 401

    # --- bad frames carrying secrets, a caller saying one, a runtime failing with them --------------------
    async with channel.client(headers={"x-voice-channel-secret": planted.header_secret}) as client:
        await client.send(f'{{"type": "user_transcript", "user_transcript": "{api_key}"}}')
        await client.send('{"type": "ping", "ping_event": {"event_id": "' + planted.openai_key + '"}}')
        await client.send("not json " + api_key)
        await client.ws.send_bytes(b"\xff\xfe" + planted.header_secret.encode())
        await client.send({"type": "init", "conversation_id": api_key})
        await barrier(client)
        await client.say(f"my key is {api_key} and the code is {planted.bearer_secret}")
        reply = await client.reply()
        assert reply.text.endswith(channel.settings.turn.apology_text)

    # --- the openai runtime: upstream errors that echo the key ----------------------------------------------
    async with openai.client(headers={"x-voice-channel-secret": planted.header_secret}) as client:
        for said in ("unauthorized please", "midstream please", "html please"):
            await client.say(said)
            assert (await client.reply()).text.endswith(openai.settings.turn.apology_text)

    # --- a third-party library logging an exception through the standard library ------------------------------
    try:
        raise OSError(f"connect failed with {api_key}")
    except OSError:
        key_in_scope = api_key  # noqa: F841
        logging.getLogger("aiohttp.server").exception("Error handling request (%s)", planted.header_secret)

    await upstream.close()
    await asyncio.sleep(0)
    text = stream.getvalue()
    # Every path above really logged, tracebacks included, and the redaction really worked on them.
    for event in (
        "token_upstream_failed",
        "hook_failed",
        "token_failed",
        "token_denied",
        "handshake_rejected",
        "frame_malformed",
        "turn_failed",
        "openai_upstream_error",
        "Error handling request",
    ):
        assert event in text, f"{event} was not logged"
    assert "Traceback" in text or '"exc_type"' in text
    assert REDACTED in text
    leaks = planted.leaks(text)
    assert leaks == [], "\n".join(line for line in text.splitlines() if planted.leaks(line))[:3000]
