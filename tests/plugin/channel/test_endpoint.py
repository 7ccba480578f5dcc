"""The endpoint: handshake verification, keepalive, malformed and oversize frames, endings."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest
from aiohttp import WSMsgType
from structlog.testing import capture_logs

from support import ScriptedPlugin, barrier, conversation, handshake_status, stalls_after, words
from voice_channel.channel.auth import JWT_HEADER
from voice_channel.elevenlabs.client import sign_speech_engine_jwt
from voice_channel.serving.keys import STATE


@pytest.mark.parametrize(
    "case",
    ["missing", "wrong_key", "expired", "wrong_issuer", "wrong_subject", "garbage", "future_iat"],
)
async def test_bad_jwt_is_refused_with_401_before_upgrade(start_channel, api_key, case):
    channel = await start_channel()
    tokens = {
        "missing": None,
        "wrong_key": sign_speech_engine_jwt("sk_someone_else"),
        "expired": sign_speech_engine_jwt(api_key, now=time.time() - 3600, lifetime_s=600),
        "wrong_issuer": sign_speech_engine_jwt(api_key, issuer="https://evil.example/convai/speech-engine"),
        "wrong_subject": sign_speech_engine_jwt(api_key, subject="someone_else"),
        "garbage": "not.a.jwt",
        "future_iat": sign_speech_engine_jwt(api_key, now=time.time() + 3600),
    }
    token = tokens[case]
    headers = {} if token is None else {JWT_HEADER: token}
    with capture_logs() as logs:
        assert await handshake_status(channel.url, headers) == 401
    assert channel.app[STATE].conversations == {}
    rejected = [e for e in logs if e["event"] == "handshake_rejected"]
    assert rejected and all(token is None or token not in str(e) for e in rejected), "the token was logged"


async def test_valid_jwt_with_bearer_prefix_is_accepted(start_channel, api_key):
    channel = await start_channel()
    headers = {JWT_HEADER: "Bearer " + sign_speech_engine_jwt(api_key)}
    assert await handshake_status(channel.url, headers) == 101


async def test_wrong_path_is_404(start_channel):
    channel = await start_channel()
    assert await handshake_status(channel.url.replace("/ws", "/elsewhere"), {}) == 404


async def test_shared_secret_header_is_required_when_configured(start_channel, api_key):
    channel = await start_channel(auth={"header_secret": "s3cret-value", "header_name": "x-api-key"})
    jwt_only = {JWT_HEADER: sign_speech_engine_jwt(api_key)}
    assert await handshake_status(channel.url, jwt_only) == 401
    assert await handshake_status(channel.url, {**jwt_only, "x-api-key": "wrong"}) == 401
    assert await handshake_status(channel.url, {**jwt_only, "X-API-Key": "s3cret-value"}) == 101


async def test_insecure_no_auth_skips_jwt_but_not_the_shared_secret(start_channel):
    channel = await start_channel(auth={"insecure_no_auth": True, "header_secret": "abc12345"})
    assert await handshake_status(channel.url, {}) == 401
    assert await handshake_status(channel.url, {"x-voice-channel-secret": "abc12345"}) == 101


async def test_handshake_headers_seen_by_plugins_exclude_credentials(start_channel, api_key):
    seen = {}

    class Plugin:
        from voice_channel import hookimpl

        @hookimpl
        def voice_channel_conversation_started(self, conversation):
            seen.update(conversation.handshake_headers)

    channel = await start_channel(plugins=[Plugin()], auth={"header_secret": "abcd1234"})
    async with conversation(channel, headers={"x-voice-channel-secret": "abcd1234", "x-session": "s-1"}) as client:
        await client.say("hi")
        await client.reply()
    lowered = {k.lower(): v for k, v in seen.items()}
    assert lowered["x-session"] == "s-1"
    assert JWT_HEADER.lower() not in lowered
    assert "x-voice-channel-secret" not in lowered


def test_public_headers_hide_credentials_in_any_case_and_read_names_case_insensitively():
    from multidict import CIMultiDict, CIMultiDictProxy

    from voice_channel.channel.auth import PublicHeaders

    raw = CIMultiDict(
        [
            (JWT_HEADER.upper(), "jwt"),
            ("Authorization", "Bearer x"),
            ("COOKIE", "c=1"),
            ("X-My-Secret", "s3cret"),
            ("X-Session", "s-1"),
            ("x-session", "s-2"),
            ("Accept-Language", "es"),
        ]
    )
    view = PublicHeaders(CIMultiDictProxy(raw), "x-my-secret")
    assert list(view) == ["X-Session", "Accept-Language"]  # one name per header, credentials left out
    assert len(view) == 2
    assert view["x-session"] == "s-1" and view["ACCEPT-LANGUAGE"] == "es"
    for hidden in (JWT_HEADER.lower(), "authorization", "Cookie", "x-MY-secret"):
        assert hidden not in view
        with pytest.raises(KeyError):
            view[hidden]
    assert "s3cret" not in repr(view) and "jwt" not in repr(view)
    raw["X-Later"] = "seen"  # a view: nothing is copied per conversation
    assert view["x-later"] == "seen"


async def test_ping_is_answered_with_pong_even_while_a_reply_streams(start_channel):
    async def blocked(message, rec):
        yield "partial "
        await rec.release.wait()
        yield "rest"

    plugin = ScriptedPlugin(blocked)
    channel = await start_channel(plugins=[plugin], runtime="scripted")
    async with conversation(channel) as client:
        await client.ping()
        assert await client.receive() == {"type": "pong"}
        await client.say("hi")
        assert (await client.receive())["content"] == "partial "
        await client.ping()
        assert await client.receive() == {"type": "pong"}
        plugin.recorder.release.set()
        assert (await client.reply()).text == "rest"


@pytest.mark.parametrize(
    "frame",
    [
        "this is not json",
        "[1, 2, 3]",
        '"just a string"',
        json.dumps({"no": "type"}),
        json.dumps({"type": "user_transcript", "event_id": "7", "user_transcript": []}),
        json.dumps({"type": "user_transcript", "event_id": True, "user_transcript": []}),
        json.dumps({"type": "user_transcript", "event_id": 1, "user_transcript": "not a list"}),
        json.dumps({"type": "init"}),
    ],
)
async def test_malformed_frame_is_logged_and_the_conversation_goes_on(start_channel, frame):
    channel = await start_channel()
    async with conversation(channel) as client:
        with capture_logs() as logs:
            await client.send(frame)
            await barrier(client)
        assert any(e["event"] == "frame_malformed" for e in logs)
        await client.say("still here")
        assert (await client.reply()).text == "You said: still here"


async def test_binary_frame_is_decoded_like_text(start_channel):
    channel = await start_channel()
    async with conversation(channel) as client:
        client.history.append({"role": "user", "content": "binary"})
        payload = {"type": "user_transcript", "event_id": 1, "user_transcript": client.history}
        await client.ws.send_bytes(json.dumps(payload).encode())
        assert (await client.reply(1)).text == "You said: binary"


async def test_unknown_frame_type_is_ignored(start_channel):
    channel = await start_channel()
    async with conversation(channel) as client:
        await client.send({"type": "contextual_update", "text": "x"})
        assert await barrier(client) == []
        await client.say("ok")
        assert (await client.reply()).text == "You said: ok"


async def test_oversize_frame_closes_with_1009_and_is_logged(start_channel):
    plugin = ScriptedPlugin(lambda m, r: words("x"))
    channel = await start_channel(plugins=[plugin], runtime="scripted", server={"max_frame_bytes": 2048})
    async with conversation(channel) as client:
        with capture_logs() as logs:
            await client.say("y" * 5000)
            assert await client.receive() == "closed"
            await plugin.recorder.conversation_ended.wait()
        assert client.ws.close_code == 1009
    assert plugin.recorder.ended_reasons == ["too_big"]
    assert any(e["event"] == "frame_too_big" for e in logs)


async def test_close_message_closes_cleanly_and_lifecycle_hook_gets_reason(start_channel):
    plugin = ScriptedPlugin(stalls_after("streaming "))
    channel = await start_channel(plugins=[plugin], runtime="scripted")
    async with conversation(channel) as client:
        await client.say("hi")
        await client.receive()
        await client.close_conversation()
        assert await client.receive() == "closed"
        assert client.ws.close_code == 1000
    await plugin.recorder.conversation_ended.wait()
    assert plugin.recorder.ended_reasons == ["close"]
    assert plugin.recorder.cancelled == [1]
    assert plugin.recorder.closed == 1


def _channel_tasks() -> list[asyncio.Task]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith(("turn-", "outbox-pump"))]


async def test_abrupt_disconnect_closes_runtime_session_and_leaves_no_task(start_channel):
    plugin = ScriptedPlugin(stalls_after("streaming "))
    channel = await start_channel(plugins=[plugin], runtime="scripted")
    client = channel.client()
    await client.connect()
    await client.say("hi")
    await client.receive()
    assert _channel_tasks(), "a turn is running"
    client.ws._response.connection.transport.abort()  # TCP reset, no close frame
    await plugin.recorder.conversation_ended.wait()
    await client.disconnect()
    assert plugin.recorder.ended_reasons == ["disconnect"]
    assert plugin.recorder.cancelled == [1]
    assert plugin.recorder.closed == 1
    assert channel.app[STATE].conversations == {}
    assert _channel_tasks() == []


async def test_server_shutdown_closes_conversations_with_1001_and_cancels_turns(start_channel):
    plugin = ScriptedPlugin(stalls_after("streaming "))
    channel = await start_channel(plugins=[plugin], runtime="scripted")
    async with conversation(channel) as client:
        await client.say("hi")
        await client.receive()
        stopping = asyncio.create_task(channel.server.close())  # the peer keeps reading meanwhile
        assert await client.receive() == "closed"
        assert client.ws.close_code == 1001
        await stopping
    assert plugin.recorder.ended_reasons == ["shutdown"]
    assert plugin.recorder.cancelled == [1]
    assert plugin.recorder.closed == 1
    assert _channel_tasks() == []


async def test_server_sends_websocket_pings(start_channel, api_key):
    channel = await start_channel(server={"heartbeat_s": 0.05})
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(
            channel.url, headers={JWT_HEADER: sign_speech_engine_jwt(api_key)}, autoping=False
        ) as ws:
            msg = await ws.receive(timeout=5)
            assert msg.type is WSMsgType.PING


async def test_open_sockets_share_one_ping_timer_that_stops_when_the_last_one_closes(start_channel):
    channel = await start_channel()
    state = channel.app[STATE]
    async with conversation(channel) as first, conversation(channel) as second:
        for client in (first, second):
            await client.say("hi")
            await client.reply()
        assert len(state.pings) == 2 and state.pings._timer is not None
    await state.idle.wait()
    assert len(state.pings) == 0 and state.pings._timer is None


@pytest.mark.parametrize("path", ["/readyz", "/healthz"])
async def test_readiness_reports_ready_without_details(start_channel, path):
    channel = await start_channel()
    async with aiohttp.ClientSession() as session:
        async with session.get(channel.server.make_url(path)) as resp:
            assert resp.status == 200
            body = await resp.json()
    assert body == {"status": "ok"}


async def test_livez_answers(start_channel):
    channel = await start_channel()
    async with aiohttp.ClientSession() as session, session.get(channel.server.make_url("/livez")) as resp:
        assert resp.status == 200 and (await resp.json()) == {"status": "alive"}


async def test_runtime_not_ready_gives_503_on_readyz_and_handshake(start_channel, api_key):
    channel = await start_channel()
    runtime = channel.app[STATE].runtime
    runtime.readiness = lambda: "warming up"  # the optional runtime method (voice_channel.serving.health)
    async with aiohttp.ClientSession() as session, session.get(channel.server.make_url("/readyz")) as resp:
        assert resp.status == 503
        assert await resp.json() == {"status": "not_ready", "reason": "warming up"}
    assert await handshake_status(channel.url, {JWT_HEADER: sign_speech_engine_jwt(api_key)}) == 503
    runtime.readiness = lambda: None
    assert await handshake_status(channel.url, {JWT_HEADER: sign_speech_engine_jwt(api_key)}) == 101


async def test_conversation_limit_answers_503(start_channel, api_key):
    channel = await start_channel(server={"max_conversations": 1})
    async with conversation(channel):
        assert await handshake_status(channel.url, {JWT_HEADER: sign_speech_engine_jwt(api_key)}) == 503


def _transcript_of_size(size: int) -> str:
    """A ``user_transcript`` frame of exactly ``size`` bytes (UTF-8)."""
    empty = json.dumps({"type": "user_transcript", "event_id": 1, "user_transcript": [{"role": "user", "content": ""}]})
    frame = empty.replace('"content": ""', '"content": "' + "a" * (size - len(empty)) + '"')
    assert len(frame.encode()) == size
    return frame


async def test_a_frame_of_exactly_max_frame_bytes_is_accepted_and_one_byte_more_is_refused(start_channel):
    plugin = ScriptedPlugin(lambda m, r: words("got it"))
    channel = await start_channel(plugins=[plugin], runtime="scripted", server={"max_frame_bytes": 2048})
    async with conversation(channel) as client:
        await client.send(_transcript_of_size(2048))
        assert (await client.reply(1)).text == "got it", "a frame of exactly the limit is accepted"
    async with conversation(channel) as client:
        await client.send(_transcript_of_size(2049))
        assert await client.receive() == "closed"
        assert client.ws.close_code == 1009
    await plugin.recorder.wait_ended(2)
    assert plugin.recorder.ended_reasons == ["disconnect", "too_big"]


async def test_a_socket_that_never_sends_init_is_closed_with_1008(start_channel):
    channel = await start_channel(server={"init_timeout_s": 0.3})
    async with conversation(channel) as started:  # sends init at once, like ElevenLabs
        with capture_logs() as logs:
            # Answers WebSocket pings (aiohttp's client does) but never sends init.
            async with conversation(channel, send_init=False, heartbeat=0.05) as silent:
                assert await silent.receive(timeout=10) == "closed"
                assert silent.ws.close_code == 1008
        (closed,) = [e for e in logs if e["event"] == "peer_closed"]
        assert closed["reason"] == "no_init" and closed["code"] == 1008
        # Its deadline passed before the silent one's: a conversation that sent init is not affected.
        await started.say("still here")
        assert (await started.reply()).text == "You said: still here"
    assert channel.app[STATE].conversations == {}


async def test_a_transcript_before_init_starts_the_conversation_in_time(start_channel):
    channel = await start_channel(server={"init_timeout_s": 0.3})
    async with conversation(channel, send_init=False) as client:
        await client.say("no init, but speaking")
        assert (await client.reply()).text == "You said: no init, but speaking"
        async with conversation(channel, send_init=False) as silent:  # a later deadline, passed here
            assert await silent.receive(timeout=10) == "closed"
        await client.say("still here")
        assert (await client.reply()).text == "You said: still here"


async def test_websocket_pings_are_answered_with_their_payload(start_channel, api_key):
    channel = await start_channel()
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(
            channel.url, headers={JWT_HEADER: sign_speech_engine_jwt(api_key)}, autoping=False
        ) as ws:
            await ws.ping(b"are you there")
            msg = await ws.receive(timeout=5)
            while msg.type is WSMsgType.PING:  # the server's own heartbeat, if it comes first
                msg = await ws.receive(timeout=5)
            assert msg.type is WSMsgType.PONG and msg.data == b"are you there"


async def test_a_peer_that_keeps_sending_but_never_answers_a_ping_is_closed_with_1008(start_channel, api_key):
    channel = await start_channel(server={"heartbeat_s": 0.2})
    with capture_logs() as logs:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(
                channel.url, headers={JWT_HEADER: sign_speech_engine_jwt(api_key)}, autoping=False
            ) as ws:
                await ws.send_json({"type": "init", "conversation_id": "conv_flood"})
                # Every received frame used to count as a sign of life (aiohttp's heartbeat), so a
                # peer sending all the time was never caught. Send until the server gives up.
                for _ in range(100_000):
                    await ws.send_json({"type": "ping"})
                    msg = await ws.receive(timeout=10)
                    if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                        break
                assert ws.close_code == 1008
    (closed,) = [e for e in logs if e["event"] == "peer_closed"]
    assert closed["reason"] == "not_reading" and "no pong" in closed["detail"]
    assert any(e["event"] == "conversation_ended" and e["reason"] == "not_reading" for e in logs)
