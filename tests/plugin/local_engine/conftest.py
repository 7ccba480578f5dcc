"""Fixtures of the local engine's tests: models loaded once, engines in front of real channels.

These tests need the ``local`` extra and espeak-ng; ``make test-local`` (part of ``make test``)
installs the extra and runs them with ``VOICE_CHANNEL_LOCAL_TESTS=1``. Elsewhere (the core run
of ``pytest``, possibly without the extra) they are not collected; under that variable a missing
dependency is a failure, never a skip.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

ENABLED = os.environ.get("VOICE_CHANNEL_LOCAL_TESTS") == "1"

# Not collected at all without the variable: the modules import the extra's packages.
collect_ignore_glob = [] if ENABLED else ["test_*.py"]


@pytest.fixture(scope="session")
def speech_models():  # type: ignore[no-untyped-def]
    from voice_channel.local_engine.config import LocalEngineConfig
    from voice_channel.local_engine.speech import load_models

    models = load_models(LocalEngineConfig(channel_url="ws://127.0.0.1:1/ws", api_key="unused"))
    yield models
    models.close()


@pytest.fixture(scope="session")
def speak():  # type: ignore[no-untyped-def]
    """Test speech (piper, deterministic) as 16 kHz PCM, generated here."""
    from voice_channel.local_engine.probe import SpeechMaker

    maker = SpeechMaker("piper")
    cache: dict[str, bytes] = {}

    def make(text: str) -> bytes:
        if text not in cache:
            cache[text] = maker(text)
        return cache[text]

    return make


@pytest.fixture
async def start_engine(speech_models: Any, api_key: str) -> AsyncIterator[Callable[..., Any]]:
    """Start a local engine in front of a channel URL; returns an object with ``signed_url()``."""
    from voice_channel.local_engine.app import create_engine_app
    from voice_channel.local_engine.config import LocalEngineConfig

    servers: list[TestServer] = []

    async def start(channel_url: str, **overrides: Any) -> LocalEngine:
        overrides.setdefault("api_key", api_key)
        config = LocalEngineConfig(channel_url=channel_url, **overrides)
        server = TestServer(create_engine_app(config, speech_models), host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return LocalEngine(server, config)

    yield start
    for server in servers:
        await server.close()


class LocalEngine:
    def __init__(self, server: TestServer, config: Any) -> None:
        self.server = server
        self.config = config

    @property
    def state(self):  # type: ignore[no-untyped-def]
        from voice_channel.local_engine.app import ENGINE

        return self.server.app[ENGINE]

    @property
    def base_url(self) -> str:
        return str(self.server.make_url("/")).rstrip("/")

    async def signed_url(self, agent_id: str = "local-test") -> str:
        import aiohttp

        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"{self.base_url}/v1/convai/conversation/get-signed-url",
                params={"agent_id": agent_id},
                headers={"xi-api-key": self.config.api_key.get_secret_value()},
            ) as response,
        ):
            assert response.status == 200, await response.text()
            return str((await response.json())["signed_url"])
