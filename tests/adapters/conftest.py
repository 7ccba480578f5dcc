"""Fixtures for runtime adapter tests: a channel whose settings include the adapters' sections."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from runtime_support import adapter_settings
from support import Channel
from voice_channel.app import create_app
from voice_channel.plugins import get_plugin_manager


@pytest.fixture
async def start_adapter_channel(api_key: str) -> AsyncIterator[Callable[..., Any]]:
    """Start a real channel server running an adapter plugin's runtime; closed after the test."""
    servers: list[TestServer] = []

    async def start(plugin: Any, runtime: str, **overrides: Any) -> Channel:
        overrides.setdefault("elevenlabs", {"api_key": api_key})
        settings = adapter_settings([plugin], runtime=runtime, **overrides)
        pm = get_plugin_manager(load_entrypoints=False, extra_plugins=[plugin])
        app = create_app(settings, pm)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return Channel(server, settings, api_key, app)

    yield start
    for server in reversed(servers):
        await server.close()
