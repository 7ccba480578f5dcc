"""Draining in one process (:mod:`voice_channel.serving.drain`): not ready, open conversations go on, then 1001."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp.test_utils import TestServer
from structlog.testing import capture_logs

from support import Channel, ScriptedPlugin, conversation
from voice_channel import hookimpl
from voice_channel.app import create_app
from voice_channel.elevenlabs.client import SpeechEngineClient
from voice_channel.plugins import PluginHooks, get_plugin_manager
from voice_channel.serving.drain import close_conversations
from voice_channel.serving.health import not_ready_reason
from voice_channel.serving.keys import DRAIN, STATE
from voice_channel.serving.server import running_app
from voice_channel.settings import build_settings_class


async def drained_app(make_settings, **server):  # type: ignore[no-untyped-def]
    settings = make_settings(server={"port": 0, **server}, echo={"delay_ms": 20})
    return settings, create_app(settings, drain=True)


def observe_drain(app) -> asyncio.Event:  # type: ignore[no-untyped-def]
    """An event set when the app's drain starts (the drain announces nothing a test could wait on)."""
    drain, started = app[DRAIN], asyncio.Event()
    wait = drain.wait

    async def observed(state):  # type: ignore[no-untyped-def]
        started.set()
        await wait(state)

    drain.wait = observed
    return started


async def test_drain_keeps_reading_answers_not_ready_and_closes_with_1001_at_the_deadline(make_settings, api_key):
    settings, app = await drained_app(make_settings, drain_timeout_s=1.0)
    state = app[STATE]
    draining = observe_drain(app)
    ready = asyncio.Event()
    release = asyncio.Event()
    outcome: dict[str, object] = {}

    async def serve() -> None:
        async with running_app(app, settings) as port:
            outcome["port"] = port
            ready.set()
            await release.wait()

    server = asyncio.create_task(serve())
    await ready.wait()
    client = SpeechEngineClient(f"ws://127.0.0.1:{outcome['port']}/ws", api_key=api_key)
    await client.connect()
    await client.say("before")
    assert (await client.reply()).text == "You said: before"
    release.set()  # the server starts draining
    await draining.wait()
    assert not_ready_reason(state) == "draining"
    with_drain = asyncio.get_running_loop().time()
    await client.say("during the drain")
    assert (await client.reply()).text == "You said: during the drain", "a conversation goes on while draining"
    assert await client.receive() == "closed"
    assert client.ws is not None and client.ws.close_code == 1001
    assert asyncio.get_running_loop().time() - with_drain >= 0.9
    await client.disconnect()
    await server


async def test_a_drain_ends_as_soon_as_the_last_conversation_does(make_settings, api_key):
    settings, app = await drained_app(make_settings, drain_timeout_s=600)
    draining = observe_drain(app)
    ready, release = asyncio.Event(), asyncio.Event()
    ports: list[int] = []

    async def serve() -> None:
        async with running_app(app, settings) as port:
            ports.append(port)
            ready.set()
            await release.wait()

    server = asyncio.create_task(serve())
    await ready.wait()
    client = SpeechEngineClient(f"ws://127.0.0.1:{ports[0]}/ws", api_key=api_key)
    await client.connect()
    await client.say("hello")
    await client.reply()
    release.set()
    await draining.wait()
    await client.disconnect()  # the caller hangs up: nothing is left to wait for
    await asyncio.wait_for(server, 10)


async def test_cut_short_closes_at_once(make_settings, api_key):
    settings, app = await drained_app(make_settings, drain_timeout_s=600)
    draining = observe_drain(app)
    ready, release = asyncio.Event(), asyncio.Event()
    ports: list[int] = []

    async def serve() -> None:
        async with running_app(app, settings) as port:
            ports.append(port)
            ready.set()
            await release.wait()

    server = asyncio.create_task(serve())
    await ready.wait()
    async with SpeechEngineClient(f"ws://127.0.0.1:{ports[0]}/ws", api_key=api_key) as client:
        await client.say("hello")
        await client.reply()
        release.set()
        await draining.wait()
        app[DRAIN].cut_short()
        assert await client.receive() == "closed"
        assert client.ws is not None and client.ws.close_code == 1001
    await asyncio.wait_for(server, 10)


async def test_an_app_without_drain_closes_at_once_on_shutdown(make_settings, api_key):
    settings = make_settings()
    app = create_app(settings)
    assert DRAIN not in app
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    async with SpeechEngineClient(str(server.make_url("/ws")).replace("http", "ws"), api_key=api_key) as client:
        await client.say("hi")
        await client.reply()
        closing = asyncio.create_task(server.close())
        assert await client.receive() == "closed"
        assert client.ws is not None and client.ws.close_code == 1001
        await closing


# --- a shutdown bounded whatever the runtimes do (review, 2026-12-06) --------------------------------------------


def stops_together(count: int, stopped: list[str]):  # type: ignore[no-untyped-def]
    """A runtime that streams, and once cancelled stops only when ``count`` runs have been cancelled.

    Closing conversations one after another never gets there (each close waits for its own run, up to
    ``turn.cancel_grace_s``, before the next run is cancelled); closing them together does at once.
    """
    cancelled = 0
    all_cancelled = asyncio.Event()

    async def behaviour(message, rec):  # type: ignore[no-untyped-def]
        nonlocal cancelled
        yield "streaming "
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled += 1
            if cancelled == count:
                all_cancelled.set()
            await asyncio.shield(all_cancelled.wait())  # stopping a remote run: done when all are asked
            stopped.append(message.text)
            raise

    return behaviour


async def read_until_closed(client: SpeechEngineClient) -> None:
    while await client.receive(timeout=30) != "closed":
        pass


async def test_shutdown_closes_the_conversations_together_not_one_after_another(start_channel):
    stopped: list[str] = []
    plugin = ScriptedPlugin(stops_together(3, stopped))
    channel = await start_channel(plugins=[plugin], runtime="scripted", turn={"cancel_grace_s": 2.0})
    clients = []
    for index in range(3):
        client = channel.client()
        await client.connect()
        await client.say(f"caller {index}")
        await client.receive()
        clients.append(client)
    readers = [asyncio.create_task(read_until_closed(client)) for client in clients]
    with capture_logs() as logs:
        await close_conversations(channel.app[STATE])
    await asyncio.gather(*readers)
    for client in clients:
        assert client.ws is not None and client.ws.close_code == 1001
        await client.disconnect()
    assert sorted(stopped) == ["caller 0", "caller 1", "caller 2"]
    assert not [log for log in logs if log["event"] == "runtime_ignored_cancellation"], "closed one after another"


def ignores_cancellation(release: asyncio.Event):  # type: ignore[no-untyped-def]
    """Streams, then ignores every cancellation until ``release`` is set."""

    async def behaviour(message, rec):  # type: ignore[no-untyped-def]
        yield "streaming "
        if message.text != "stubborn":
            await asyncio.Event().wait()
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                rec.cancel_seen.set()

    return behaviour


@pytest.mark.timeout(30)
async def test_shutdown_ends_even_if_a_runtime_never_stops(start_channel):
    """Before the fix the close awaited such a run with no bound: the shutdown (and the 1001s) never came."""
    release = asyncio.Event()
    plugin = ScriptedPlugin(ignores_cancellation(release))
    channel = await start_channel(
        plugins=[plugin], runtime="scripted", server={"shutdown_timeout_s": 0.5}, turn={"cancel_grace_s": 0.2}
    )
    try:
        async with conversation(channel) as stubborn, conversation(channel) as fine:
            await stubborn.say("stubborn")
            await stubborn.receive()
            await fine.say("fine")
            await fine.receive()
            reader = asyncio.create_task(read_until_closed(fine))
            with capture_logs() as logs:
                await close_conversations(channel.app[STATE])
            await reader
            assert fine.ws is not None and fine.ws.close_code == 1001
        assert any(log["event"] == "runtime_ignored_cancellation" for log in logs)
    finally:
        release.set()


@pytest.mark.timeout(30)
async def test_a_close_message_ends_the_conversation_even_if_the_runtime_ignores_cancellation(start_channel):
    """The socket is closed and the max_conversations slot freed; before the fix both waited on the run for good."""
    release = asyncio.Event()
    plugin = ScriptedPlugin(ignores_cancellation(release))
    channel = await start_channel(plugins=[plugin], runtime="scripted", turn={"cancel_grace_s": 0.2})
    state = channel.app[STATE]
    try:
        async with conversation(channel) as client:
            await client.say("stubborn")
            await client.receive()
            await client.close_conversation()
            while await client.receive(timeout=None) != "closed":
                pass
            assert client.ws is not None and client.ws.close_code == 1000
        await state.idle.wait()
        assert state.conversations == {}
    finally:
        release.set()


class _SlowCloseSession:
    def __init__(self, owner: SlowClosePlugin) -> None:
        self._owner = owner

    async def respond(self, message):  # type: ignore[no-untyped-def]
        yield "hello"

    async def resolve(self, request_id, decision):  # type: ignore[no-untyped-def]
        pass

    async def aclose(self) -> None:
        self._owner.events.append("session_aclose_started")
        self._owner.session_closing.set()
        try:
            await self._owner.release.wait()  # a remote session slow to close (longer than shutdown_timeout_s)
        except asyncio.CancelledError:
            self._owner.events.append("session_aclose_cancelled")
            raise
        self._owner.events.append("session_aclose_done")


class _Runtime:
    name = "slowclose"

    def __init__(self, owner: SlowClosePlugin) -> None:
        self._owner = owner

    async def start(self) -> None:
        pass

    async def open_session(self, context):  # type: ignore[no-untyped-def]
        return _SlowCloseSession(self._owner)

    async def aclose(self) -> None:
        self._owner.events.append("runtime_aclose")


class SlowClosePlugin:
    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.session_closing = asyncio.Event()
        self.events: list[str] = []

    @hookimpl
    def voice_channel_register_runtimes(self, register):  # type: ignore[no-untyped-def]
        register("slowclose", lambda settings: _Runtime(self), "test runtime")


@pytest.mark.timeout(30)
async def test_app_shutdown_leaves_no_conversation_close_running(api_key):
    """A session close slower than ``server.shutdown_timeout_s``: once the app has shut down, no close task of
    the app is still pending (it would be destroyed pending with the loop), and the session's close ended
    (cancelled at the deadline) before its runtime stopped."""
    plugin = SlowClosePlugin()
    pm = get_plugin_manager(load_entrypoints=False, extra_plugins=[plugin])
    settings = build_settings_class(PluginHooks(pm).settings_sections())(
        elevenlabs={"api_key": api_key},
        runtime="slowclose",
        server={"shutdown_timeout_s": 0.3},
        turn={"cancel_grace_s": 0.2},
    )
    app = create_app(settings, pm)
    state = app[STATE]
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async with conversation(Channel(server, settings, api_key, app)) as client:
            await client.say("hi")
            await client.receive()
            await server.close()  # the app's whole shutdown: on_shutdown, handlers, cleanup_ctx
        assert [task for task in state.closing if not task.done()] == []
        events = plugin.events
        assert events.index("session_aclose_cancelled") < events.index("runtime_aclose"), events
    finally:
        plugin.release.set()
        await asyncio.gather(*state.closing, return_exceptions=True)
