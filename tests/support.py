"""Test helpers shared by the test modules (fixtures live in conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from voice_channel.client import SpeechEngineClient
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
        return SpeechEngineClient(self.url, **kwargs)


@asynccontextmanager
async def conversation(channel: Channel, **kwargs: Any) -> AsyncIterator[SpeechEngineClient]:
    async with channel.client(**kwargs) as client:
        yield client
