"""Hermes Agent's real gateway, in-process, with the plugin enabled the way a user enables it.

This directory runs in its own pytest process (``make test-hermes``; the root conftest skips it
otherwise): Hermes's gateway reads ``$HERMES_HOME/config.yaml`` and rewrites ``os.environ`` when it
is imported, so the home, its config and the fake LLM are set up here, at import, before any
Hermes module is. Tests share one gateway and isolate themselves by conversation (one Hermes chat
each).
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from hermes_support import PLATFORM, FakeLLM, hermes_config, prepare_hermes_home
from voice_channel.elevenlabs.client import SpeechEngineClient

CONFIRM_TIMEOUT_S = 3.0
API_KEY = f"sk_test_{secrets.token_hex(16)}"
SCRATCH = Path(tempfile.mkdtemp(prefix="voice-channel-hermes-"))
HOME = SCRATCH / "hermes-home"
LLM = FakeLLM(token_delay=0.02).start()
HERMES_ENV = prepare_hermes_home(
    HOME,
    hermes_config(
        LLM.base_url,
        extra={
            "server": {"host": "127.0.0.1", "port": 0, "path": "/voice"},
            "confirmations": {"timeout_s": CONFIRM_TIMEOUT_S},
            # Exact texts in assertions: no "One moment." while Hermes starts its first agent.
            "turn": {"filler_enabled": False},
        },
        # On, so that the tests show tool progress is never spoken.
        display={"platforms": {PLATFORM: {"tool_progress": "all"}}},
    ),
    API_KEY,
)


def pytest_configure(config: pytest.Config) -> None:
    # Three resources Hermes never releases, reported when the interpreter collects them: the kanban
    # dispatcher lock it holds "for the process lifetime", its cached HTTP connection to the LLM, and the
    # output pipe of a terminal command interrupted while it runs (an unnamed pipe: a file descriptor
    # number; nothing of the channel's opens one in these tests).
    port = LLM.base_url.rsplit(":", 1)[1].split("/")[0]
    for pattern in (
        r"<_io\.\w+ name='[^']*/kanban/\.dispatcher\.lock'",
        rf"<socket\.socket .*raddr=\('127\.0\.0\.1', {port}\)>",
        r"<_io\.(FileIO|TextIOWrapper) name=\d+ ",
    ):
        message = f"Exception ignored in. {pattern}"
        config.addinivalue_line("filterwarnings", f"ignore:{message}:pytest.PytestUnraisableExceptionWarning")
        # Also process-wide: pytest reports what is collected at exit outside any test.
        warnings.filterwarnings("ignore", message=message, category=pytest.PytestUnraisableExceptionWarning)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    LLM.stop()
    shutil.rmtree(SCRATCH, ignore_errors=True)


@dataclass
class Gateway:
    runner: Any
    adapter: Any

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.adapter.port}/voice"

    def client(self, **kwargs: Any) -> SpeechEngineClient:
        kwargs.setdefault("hear_replies", True)  # as ElevenLabs: a reply played to its end is in the history
        return SpeechEngineClient(self.url, api_key=API_KEY, **kwargs)


@pytest.fixture(scope="session")
def llm() -> FakeLLM:
    return LLM


@pytest.fixture(scope="session")
def hermes_home() -> Path:
    return HOME


@pytest.fixture
def scratch() -> Path:
    """A directory removed with the Hermes home at the end of the session."""
    return Path(tempfile.mkdtemp(dir=SCRATCH))


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def gateway() -> AsyncIterator[Gateway]:
    from gateway.config import Platform, load_gateway_config
    from gateway.run import GatewayRunner
    from hermes_cli import plugins as hermes_plugins

    # Discovery is a process-wide singleton: rescan so this home's plugins.enabled is read.
    hermes_plugins.discover_plugins(force=True)
    runner = GatewayRunner(load_gateway_config())
    assert await runner.start(), "no platform connected"
    adapter = runner.adapters[Platform(PLATFORM)]
    await adapter.wait_ready()
    assert adapter.readiness() is None
    try:
        yield Gateway(runner, adapter)
    finally:
        await runner.stop()
