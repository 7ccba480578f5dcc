"""The ``openai`` runtime against upstream servers that behave in ways the fake server does not (review, 2026-12-06).

Each test reproduces one fault: a body that ends after ``data: [DONE]`` (pooling), more concurrent turns than
aiohttp's default pool, chunks of the wrong shape."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from structlog.testing import capture_logs

import voice_channel_openai.plugin as openai_plugin
from runtime_support import adapter_settings
from voice_channel.channel.record import ConversationRecord
from voice_channel.runtime import ConversationContext, RuntimeMessage, TextDelta
from voice_channel_openai.runtime import OpenAIRuntime, OpenAISession
from voice_channel_openai.sse import MAX_LINE_CHARS, iter_events

APOLOGY = "Sorry, something went wrong on my side."
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def sse(obj: Any) -> bytes:
    return f"data: {json.dumps(obj)}\n\n".encode()


def token(text: str, finish: str | None = None) -> bytes:
    return sse({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]})


@pytest.fixture
async def upstream() -> AsyncIterator[Callable[[Handler], Awaitable[tuple[OpenAIRuntime, OpenAISession]]]]:
    """``await upstream(handler)``: a started runtime (and one session) against a server answering with ``handler``."""
    servers: list[TestServer] = []
    runtimes: list[OpenAIRuntime] = []

    async def start(handler: Handler, **openai: Any) -> tuple[OpenAIRuntime, OpenAISession]:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", handler)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        settings = adapter_settings(
            [openai_plugin], runtime="openai", openai={"base_url": str(server.make_url("/v1")), **openai}
        )
        runtime = OpenAIRuntime(settings)
        await runtime.start()
        runtimes.append(runtime)
        context = ConversationContext("conv", settings, ConversationRecord(), "vc-000000000000")
        return runtime, await runtime.open_session(context)

    yield start
    for runtime in runtimes:
        await runtime.aclose()
    for server in servers:
        await server.close()


DONE = b"data: [DONE]\n\n"


def streaming(*frames: bytes) -> Handler:
    """A chat-completions handler that streams ``frames`` as they are, then ends the body."""

    async def chat(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for frame in frames:
            await response.write(frame)
        await response.write_eof()
        return response

    return chat


def message(text: str = "hello") -> RuntimeMessage:
    return RuntimeMessage(text=text, conversation_id="conv", event_id=1, boundary="vc-000000000000")


async def collect(session: OpenAISession, text: str = "hello") -> list[Any]:
    return [event async for event in session.respond(message(text))]


def spoken(events: list[Any]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


# --- 1. a completed stream's connection is thrown away, not pooled --------------------------------


async def test_a_completed_stream_returns_its_connection_to_the_pool(upstream):
    # A real server (uvicorn, Hermes's API server) sends the chunked body's terminator in its own write
    # after ``data: [DONE]``; the runtime returns at [DONE], releases a response whose body is not at its
    # end, and aiohttp closes that connection: every turn pays a new TCP (and TLS) connect before its
    # first token, although the module promises connection pooling.
    peers: set[Any] = set()

    async def chat(request: web.Request) -> web.StreamResponse:
        peers.add(request.transport.get_extra_info("peername"))  # type: ignore[union-attr]
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(token("Hello."))
        await response.write(b"data: [DONE]\n\n")
        await asyncio.sleep(0.05)  # the server's own bookkeeping before it ends the body
        await response.write_eof()
        return response

    _runtime, session = await upstream(chat)
    for _ in range(3):
        assert spoken(await collect(session)) == "Hello."
    assert len(peers) == 1, f"{len(peers)} connections for 3 turns: none was reused"


async def test_more_than_100_concurrent_turns_all_reach_the_server(upstream):
    # The shared ClientSession keeps aiohttp's default connector (limit=100 connections). A worker is sized
    # for ~1,000 conversations (README, Sizing); with 100 replies streaming, turn 101 waits in the pool
    # without a log line, its request not even sent: read_timeout_s ("the wait for the first token
    # included") does not run, and only total_timeout_s (300 s) ends the silence.
    release = asyncio.Event()
    received = 0
    all_in = asyncio.Event()
    turns = 101

    async def chat(request: web.Request) -> web.StreamResponse:
        nonlocal received
        received += 1
        if received == turns:
            all_in.set()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(token("Working on it. "))
        await release.wait()  # a long reply: the stream stays open
        await response.write(token("Done."))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    _runtime, session = await upstream(chat)
    tasks = [asyncio.create_task(collect(session)) for _ in range(turns)]
    try:
        async with asyncio.timeout(5):
            await all_in.wait()
    except TimeoutError:
        pytest.fail(f"only {received} of {turns} concurrent turns reached the server; the rest wait for a connection")
    finally:
        release.set()
        results = await asyncio.gather(*tasks)
    assert all(spoken(events) == "Working on it. Done." for events in results)


@pytest.mark.parametrize(
    "chunk",
    [
        {"choices": [{"index": 0, "delta": "Hello"}]},  # delta as a string
        {"choices": [{"index": 0, "delta": ["Hello"]}]},  # delta as a list
        {"choices": [{"index": 0, "delta": 7}]},
    ],
)
async def test_a_chunk_of_the_wrong_shape_is_an_upstream_error_not_a_crash(upstream, chunk):
    # JSON that parses but is not a chat-completion chunk raised AttributeError out of respond(): the channel
    # then logs "turn_failed" with a traceback of our code, and the operator never sees what the server sent
    # (the module promises upstream trouble is logged with the start of the body and answered with the apology).
    _runtime, session = await upstream(streaming(token("Partial "), sse(chunk), DONE))
    with capture_logs() as logs:
        events = await collect(session)
    assert spoken(events) == "Partial " + APOLOGY
    (entry,) = [e for e in logs if e["event"] == "openai_upstream_error"]
    assert entry["reason"] == "malformed stream event" and json.dumps(chunk["choices"][0]["delta"]) in entry["detail"]


async def test_a_completion_of_the_wrong_shape_is_an_upstream_error_not_a_crash(upstream):
    # The same for a server that ignores ``stream: true``: ``choices[0].message`` as a string.
    async def chat(request: web.Request) -> web.StreamResponse:
        return web.json_response({"choices": [{"index": 0, "message": "All at once."}]})

    _runtime, session = await upstream(chat)
    with capture_logs() as logs:
        events = await collect(session)
    assert spoken(events) == APOLOGY
    assert [e["reason"] for e in logs if e["event"] == "openai_upstream_error"] == ["malformed completion"]


async def test_an_error_event_is_an_upstream_error(upstream):
    error = b'event: error\ndata: {"message": "model overloaded"}\n\n'
    _runtime, session = await upstream(streaming(token("Partial "), error, DONE))
    with capture_logs() as logs:
        events = await collect(session)
    assert spoken(events) == "Partial " + APOLOGY
    (entry,) = [e for e in logs if e["event"] == "openai_upstream_error"]
    assert entry["reason"] == "error event in stream" and "model overloaded" in entry["detail"]


async def test_content_given_as_a_list_of_parts_is_spoken(upstream):
    parts = [
        {"type": "text", "text": "Hello "},
        {"type": "image_url", "image_url": {}},
        {"type": "text", "text": "there."},
    ]
    chunk = sse({"choices": [{"index": 0, "delta": {"content": parts}}]})
    _runtime, session = await upstream(streaming(chunk, DONE))
    assert spoken(await collect(session)) == "Hello there."


async def test_a_line_without_end_past_the_limit_is_an_upstream_error(upstream):
    _runtime, session = await upstream(streaming(token("Partial "), b"data: " + b"x" * (MAX_LINE_CHARS + 1)))
    with capture_logs() as logs:
        events = await collect(session)
    assert spoken(events) == "Partial " + APOLOGY
    assert [e["reason"] for e in logs if e["event"] == "openai_upstream_error"] == ["malformed stream"]


@pytest.mark.timeout(20)
async def test_a_long_line_in_small_pieces_is_parsed_in_linear_time():
    """Re-splitting the whole buffer on every read was quadratic: 16 MB in 1 KiB pieces took about a minute of
    the event loop (every conversation of the worker waited). Linear, it is milliseconds: a hang guard suffices."""
    line = '{"choices": [{"delta": {"content": "' + "x" * (16 * 1024 * 1024) + '"}}]}'
    raw = f"data: {line}\n\n".encode()

    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(raw), 1024):
            yield raw[start : start + 1024]

    events = [event async for event in iter_events(pieces(), max_line=32 * 1024 * 1024)]
    assert [event.data for event in events] == [line]
