"""Shared fixtures: isolated settings, a real server on 127.0.0.1, a client playing ElevenLabs."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp.test_utils import TestServer

from processes import cpu_load
from support import BackgroundLoop, Channel, ElevenLabsStandin, start_standin
from voice_channel.app import create_app
from voice_channel.plugins import PluginHooks, get_plugin_manager
from voice_channel.settings import Settings, build_settings_class


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Hermes Agent's tests run only when asked for by path (``make test-hermes``), in their own process:
    importing Hermes's gateway reads ``$HERMES_HOME`` and rewrites ``os.environ``."""
    hermes_dir = Path(__file__).parent / "adapters" / "hermes"
    if collection_path == hermes_dir:
        requested = [Path(arg.split("::")[0]).resolve() for arg in config.args]
        if not any(path == hermes_dir or hermes_dir in path.parents for path in requested):
            return True
    return None


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--cpu-load",
        type=int,
        default=int(os.environ.get("VOICE_CHANNEL_TEST_CPU_LOAD") or 0),
        metavar="N",
        help="keep N CPUs busy (stress-ng --cpu N) while the tests run, to prove they hold under load "
        "(default: $VOICE_CHANNEL_TEST_CPU_LOAD, else 0); the load is always stopped at the end",
    )


@pytest.fixture(scope="session", autouse=True)
def _cpu_load(request: pytest.FixtureRequest) -> Iterator[None]:
    workers = request.config.getoption("--cpu-load")
    if not workers:
        yield
        return
    with cpu_load(workers):
        yield


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads the developer's environment."""
    for name in list(os.environ):
        if name.startswith(("VOICE_CHANNEL_", "ELEVENLABS_")):
            monkeypatch.delenv(name)
    structlog.contextvars.clear_contextvars()


@pytest.fixture(autouse=True)
def _plain_logging() -> Iterable[None]:
    structlog.reset_defaults()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        cache_logger_on_first_use=False,
    )
    yield
    structlog.reset_defaults()


@pytest.fixture
def api_key() -> str:
    return f"sk_test_{secrets.token_hex(16)}"


@pytest.fixture
def make_settings(api_key: str) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        overrides.setdefault("elevenlabs", {"api_key": api_key})
        return Settings(**overrides)

    return make


@pytest.fixture
async def start_channel(api_key: str) -> AsyncIterator[Callable[..., Any]]:
    servers: list[TestServer] = []

    async def start(*, plugins: Iterable[Any] = (), **overrides: Any) -> Channel:
        pm = get_plugin_manager(load_entrypoints=False, extra_plugins=plugins)
        # Built the way the CLI builds them: with the settings sections the plugins register.
        overrides.setdefault("elevenlabs", {"api_key": api_key})
        settings = build_settings_class(PluginHooks(pm).settings_sections())(**overrides)
        app = create_app(settings, pm)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return Channel(server, settings, api_key, app)

    yield start
    for server in reversed(servers):
        await server.close()


@pytest.fixture
async def elevenlabs(api_key: str) -> AsyncIterator[ElevenLabsStandin]:
    """The ElevenLabs REST stand-in, on this test's event loop, accepting ``api_key``."""
    standin = await start_standin(api_key)
    yield standin
    await standin.server.close()


@pytest.fixture
def background() -> Iterator[BackgroundLoop]:
    """An event loop in a thread, for servers that synchronous code (the CLI) talks to."""
    with BackgroundLoop() as loop:
        yield loop


@pytest.fixture
def threaded_elevenlabs(background: BackgroundLoop, api_key: str) -> Iterator[ElevenLabsStandin]:
    """The ElevenLabs REST stand-in on the background loop (for CLI tests)."""
    standin = background.run(start_standin(api_key))
    yield standin
    background.run(standin.server.close())
