"""Fixtures for runtime adapter tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from support import Channel


@pytest.fixture
def start_adapter_channel(start_channel: Callable[..., Any]) -> Callable[..., Any]:
    """Start a real channel server running an adapter plugin's runtime; closed after the test."""

    async def start(plugin: Any, runtime: str, **overrides: Any) -> Channel:
        channel: Channel = await start_channel(plugins=[plugin], runtime=runtime, **overrides)
        return channel

    return start
