"""Test helpers shared by the test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from elevenlabs_standin import STANDIN, Standin, engine_defaults
from elevenlabs_standin import make_app as make_standin_app
from voice_channel import hookimpl
from voice_channel.elevenlabs.client import SpeechEngineClient
from voice_channel.runtime import ConfirmationDecision, ConversationContext, RuntimeMessage
from voice_channel.settings import Settings


class Channel:
    """A running voice channel server and a way to open conversations with it."""

    def __init__(self, server: TestServer, settings: Settings, api_key: str, app: web.Application) -> None:
        self.server = server
        self.settings = settings
        self.api_key = api_key
        self.app = app

    @property
    def url(self) -> str:
        return str(self.server.make_url(self.settings.server.path)).replace("http://", "ws://")

    def client(self, **kwargs: Any) -> SpeechEngineClient:
        kwargs.setdefault("api_key", self.api_key)
        # As ElevenLabs: a reply played to its end is in the next transcript's history.
        kwargs.setdefault("hear_replies", True)
        return SpeechEngineClient(self.url, **kwargs)


@asynccontextmanager
async def conversation(channel: Channel, **kwargs: Any) -> AsyncIterator[SpeechEngineClient]:
    async with channel.client(**kwargs) as client:
        yield client


# --- a scriptable runtime for tests ---------------------------------------------------------------


@dataclass
class Recorder:
    """What a scripted runtime saw; events let tests wait for things without sleeping."""

    messages: list[RuntimeMessage] = field(default_factory=list)
    #: The context of each session opened (the record in it is the conversation's, live).
    contexts: list[ConversationContext] = field(default_factory=list)
    cancelled: list[int | None] = field(default_factory=list)
    resolved: list[tuple[str, ConfirmationDecision]] = field(default_factory=list)
    opened: int = 0
    closed: int = 0
    ended_reasons: list[str] = field(default_factory=list)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    cancel_seen: asyncio.Event = field(default_factory=asyncio.Event)
    session_closed: asyncio.Event = field(default_factory=asyncio.Event)
    conversation_ended: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    ended_changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def wait_ended(self, count: int) -> None:
        """Wait until ``count`` conversations have ended."""
        async with self.ended_changed:
            await self.ended_changed.wait_for(lambda: len(self.ended_reasons) >= count)


Behaviour = Callable[[RuntimeMessage, Recorder], Any]


class _ScriptedSession:
    def __init__(self, behaviour: Behaviour, recorder: Recorder) -> None:
        self._behaviour = behaviour
        self._recorder = recorder

    async def respond(self, message: RuntimeMessage):  # type: ignore[no-untyped-def]
        self._recorder.messages.append(message)
        self._recorder.started.set()
        try:
            async for item in self._behaviour(message, self._recorder):
                yield item
        except (asyncio.CancelledError, GeneratorExit):
            # Cancelled while awaiting, or closed (aclose) while suspended at a yield: both stop it.
            self._recorder.cancelled.append(message.event_id)
            self._recorder.cancel_seen.set()
            raise

    async def resolve(self, request_id: str, decision: ConfirmationDecision) -> None:
        self._recorder.resolved.append((request_id, decision))

    async def aclose(self) -> None:
        self._recorder.closed += 1
        self._recorder.session_closed.set()


class _ScriptedRuntime:
    name = "scripted"

    def __init__(self, behaviour: Behaviour, recorder: Recorder) -> None:
        self._behaviour = behaviour
        self._recorder = recorder

    async def start(self) -> None:
        pass

    async def open_session(self, context: ConversationContext) -> _ScriptedSession:
        self._recorder.opened += 1
        self._recorder.contexts.append(context)
        return _ScriptedSession(self._behaviour, self._recorder)

    async def aclose(self) -> None:
        pass


class ScriptedPlugin:
    """A plugin registering runtime ``scripted`` driven by ``behaviour(message, recorder)``."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.recorder = Recorder()

    @hookimpl
    def voice_channel_register_runtimes(self, register):  # type: ignore[no-untyped-def]
        register("scripted", lambda settings: _ScriptedRuntime(self.behaviour, self.recorder), "test runtime")

    @hookimpl
    async def voice_channel_conversation_ended(self, conversation, reason):  # type: ignore[no-untyped-def]
        self.recorder.ended_reasons.append(reason)
        self.recorder.conversation_ended.set()
        async with self.recorder.ended_changed:
            self.recorder.ended_changed.notify_all()


async def words(*items: str):  # type: ignore[no-untyped-def]
    for item in items:
        yield item


def stalls_after(*items: str) -> Behaviour:
    """A behaviour that says ``items``, then waits until the test releases it, then says "never"."""

    async def behaviour(message: RuntimeMessage, rec: Recorder):  # type: ignore[no-untyped-def]
        for item in items:
            yield item
        await rec.release.wait()
        yield "never"

    return behaviour


async def barrier(client: SpeechEngineClient) -> list[dict[str, Any]]:
    """Ping and wait for the pong: every frame sent before has been processed by the server.

    Returns the frames received before the pong.
    """
    await client.ping()
    seen = []
    while True:
        frame = await client.receive()
        assert frame != "closed", "socket closed while waiting for pong"
        if frame.get("type") == "pong":
            return seen
        seen.append(frame)


class FakeSocket:
    """In-memory stand-in for a WebSocket's send side.

    ``send_str`` records the frame at once (like aiohttp, which writes to the transport before
    awaiting drain) and then, while ``paused`` is set, waits as a slow peer would make it.
    """

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.resume = asyncio.Event()
        self.resume.set()
        self.fail_with: Exception | None = None
        self.written = asyncio.Event()
        self._changed = asyncio.Event()

    def pause(self) -> None:
        self.resume.clear()

    async def send_str(self, data: str) -> None:
        await self._record(json.loads(data))

    async def pong(self, message: bytes = b"") -> None:
        """A WebSocket-level pong, recorded as ``{"ws_pong": payload}``."""
        await self._record({"ws_pong": message.decode()})

    async def ping(self, message: bytes = b"") -> None:
        """A WebSocket-level ping, recorded as ``{"ws_ping": payload hex}``."""
        await self._record({"ws_ping": message.hex()})

    async def _record(self, frame: dict[str, Any]) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.sent.append(frame)
        self.written.set()
        self._changed.set()
        await self.resume.wait()

    async def wait_until(self, predicate: Callable[[list[dict[str, Any]]], bool]) -> None:
        """Wait, without polling, until ``predicate(sent)`` holds."""
        while not predicate(self.sent):
            self._changed.clear()
            await self._changed.wait()


# --- a private event loop in a thread, for servers that synchronous code (the CLI) talks to -------


class BackgroundLoop:
    """An event loop running in its own thread: servers there answer a blocking caller in the test thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="test-background-loop", daemon=True)

    def __enter__(self) -> BackgroundLoop:
        self._thread.start()
        return self

    def run(self, coro: Any, timeout: float = 30.0) -> Any:
        """Run ``coro`` on the background loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def __exit__(self, *exc: object) -> None:
        async def drain() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.loop.shutdown_asyncgens()

        self.run(drain())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


# --- the ElevenLabs REST stand-in, started for a test ----------------------------------------------


class ElevenLabsStandin:
    """A running REST stand-in (``tests/elevenlabs_standin.py``) and shortcuts for tests."""

    def __init__(self, server: TestServer) -> None:
        self.server = server

    @property
    def base_url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")  # without /v1: the SDK adds it

    @property
    def state(self) -> Standin:
        return self.server.app[STANDIN]

    def add_engine(self, **fields: Any) -> str:
        """Put an engine straight into the stand-in (no request recorded); returns its id."""
        engine_id = "seng_" + secrets.token_hex(8)
        engine = engine_defaults(fields.pop("name", "test engine"), int(time.time()))
        for key, value in fields.items():
            engine[key] = {**engine[key], **value} if isinstance(engine.get(key), dict) else value
        engine["speech_engine_id"] = engine_id
        self.state.engines[engine_id] = engine
        return engine_id

    def settings(self, **extra: Any) -> dict[str, Any]:
        """An ``elevenlabs`` settings section pointing the SDK at the stand-in (no retries: failures show at once)."""
        return {"api_key": self.state.api_key, "base_url": self.base_url, "max_retries": 0, **extra}


async def start_standin(api_key: str) -> ElevenLabsStandin:
    server = TestServer(make_standin_app(api_key), host="127.0.0.1")
    await server.start_server()
    return ElevenLabsStandin(server)


async def get_token(channel: Channel, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any], Any]:
    """``GET /api/token`` on a running channel: status, JSON body, response headers."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(channel.server.make_url("/api/token"), headers=headers or {}) as response,
    ):
        return response.status, await response.json(), response.headers


async def handshake_status(url: str, headers: dict[str, str]) -> int:
    """The HTTP status of a WebSocket upgrade to ``url`` with ``headers`` (101 when it opens)."""
    async with aiohttp.ClientSession() as session:
        try:
            async with session.ws_connect(url, headers=headers) as ws:
                await ws.close()
                return 101
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance: how many one-letter edits turn ``a`` into ``b`` (code words must be far apart)."""
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        diagonal, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (ca != cb))
    return row[-1]
