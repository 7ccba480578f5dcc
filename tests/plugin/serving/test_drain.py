"""Draining in one process (:mod:`voice_channel.serving.drain`): not ready, open conversations go on, then 1001."""

from __future__ import annotations

import asyncio

from aiohttp.test_utils import TestServer

from voice_channel.app import create_app
from voice_channel.elevenlabs.client import SpeechEngineClient
from voice_channel.serving.health import not_ready_reason
from voice_channel.serving.keys import DRAIN, STATE
from voice_channel.serving.server import running_app


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
