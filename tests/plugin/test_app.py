"""The application factory (:mod:`voice_channel.app`) as a host application uses it."""

from __future__ import annotations

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from voice_channel.app import create_app
from voice_channel.plugins import get_plugin_manager


async def test_a_mounted_app_started_again_takes_conversations_again(make_settings):
    """aiohttp lets a host start its application again after a stop (a second runner, a test server per
    test); the voice app mounted in it must be ready again, not answer 'shutting down' for good."""
    voice = create_app(make_settings(), get_plugin_manager(load_entrypoints=False))
    host = web.Application()
    host.add_subapp("/voice", voice)
    statuses = []
    for _ in range(2):
        server = TestServer(host, host="127.0.0.1")
        await server.start_server()
        try:
            async with aiohttp.ClientSession() as session, session.get(server.make_url("/voice/readyz")) as response:
                statuses.append((response.status, await response.json()))
        finally:
            await server.close()
    assert statuses == [(200, {"status": "ok"}), (200, {"status": "ok"})]
