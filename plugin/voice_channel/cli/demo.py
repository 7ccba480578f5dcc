"""``voice-channel demo``: the channel, the browser page and a terminal conversation in one command, no key needed.

With the ``local`` extra installed and the page built, the demo is spoken: the local engine (a stand-in for
ElevenLabs, :mod:`voice_channel.local_engine`) runs next to the channel, and the page talks to it through the real
``@elevenlabs/client``. Otherwise the demo says why and is typed only. Either way the terminal takes typed turns
too (a conversation of its own), and the demo ends with the terminal's input.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import click
from pydantic import SecretStr

from voice_channel.app import create_app
from voice_channel.cli.common import config_option, fail, load, nested, setup_logging
from voice_channel.cli.talk import run_talk
from voice_channel.serving.server import running_app
from voice_channel.settings import Settings, SettingsError
from voice_channel.talk import input_kind

DEFAULT_RUNTIME = "demo"


@click.command()
@click.option("--runtime", default=DEFAULT_RUNTIME, show_default=True, help="Runtime that answers.")
@click.option(
    "--log-level",
    default="warning",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
    help="Server log level (on standard error).",
)
@click.option("--ui/--no-ui", default=True, show_default=True, help="Also serve the browser page (ui.enabled).")
@click.option(
    "--voice/--no-voice",
    default=None,
    help="Spoken conversations in the page through the local engine. Default: when the local extra is installed.",
)
@config_option
def demo(runtime: str, log_level: str, ui: bool, voice: bool | None, config_file: str | None) -> None:
    """Start the channel in-process (ephemeral key, free port) and talk to it from the terminal and the page."""
    from voice_channel.local_engine.local_mode import voice_unavailable

    api_key = f"sk_demo_{secrets.token_hex(16)}"
    # The page is only served on 127.0.0.1 here, so anonymous tokens are fine.
    overrides = nested(
        runtime=runtime, server__host="127.0.0.1", server__port=0, ui__enabled=ui, token__allow_anonymous=True
    )
    settings, pm = load(config_file, overrides)
    settings.elevenlabs.api_key = SecretStr(api_key)
    settings.elevenlabs.speech_engine_id = None
    settings.auth.insecure_no_auth = False
    setup_logging(settings, level=log_level)
    spoken = False
    if voice is not False and ui:
        problem = voice_unavailable()
        if problem is None:
            spoken = True
        elif voice:
            raise fail(f"no spoken demo: {problem}")
        else:
            click.echo(f"voice-channel demo: no spoken demo here: {problem}. Starting the typed demo.", err=True)
    elif voice and not ui:
        raise fail("--voice needs the page: drop --no-ui")
    try:
        code = asyncio.run(_demo(settings, pm, api_key, spoken=spoken))
    except SettingsError as exc:
        raise fail(str(exc)) from None
    sys.exit(code)


async def _demo(settings: Settings, pm: Any, api_key: str, *, spoken: bool) -> int:
    async with _local_engine(settings, api_key, enabled=spoken) as engine:
        app = create_app(settings, pm)
        async with running_app(app, settings) as port:
            url = f"ws://127.0.0.1:{port}{settings.server.path}"
            if engine is not None:
                engine.set_channel(url)
            click.echo(f"voice-channel demo: runtime {settings.runtime!r} at {url}", err=True)
            if settings.ui.enabled:
                how = "press Start and speak" if engine is not None else "typed turns only, no speech"
                click.echo(f"voice-channel demo: browser page at http://127.0.0.1:{port}/ ({how})", err=True)
            if settings.ui.enabled and input_kind(sys.stdin) == "empty":
                click.echo(
                    "voice-channel demo: nothing can be typed here (standard input is empty, e.g. /dev/null);"
                    " serving the page until Ctrl-C or SIGTERM",
                    err=True,
                )
                await _until_stopped()
                return 0
            return await run_talk(url, api_key=api_key)


async def _until_stopped() -> None:
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopped.set)
    try:
        await stopped.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


class _RunningEngine:
    def __init__(self, app: Any) -> None:
        self.app = app

    def set_channel(self, url: str) -> None:
        from voice_channel.local_engine.app import ENGINE

        state = self.app[ENGINE]
        state.config = state.config.model_copy(update={"channel_url": url})


@contextlib.asynccontextmanager
async def _local_engine(settings: Settings, api_key: str, *, enabled: bool) -> AsyncIterator[_RunningEngine | None]:
    """Start the local engine (models loaded) on a free port and point the channel's settings at it."""
    if not enabled:
        yield None
        return
    from aiohttp import web

    from voice_channel.local_engine.app import create_engine_app
    from voice_channel.local_engine.config import LocalEngineConfig
    from voice_channel.local_engine.local_mode import LOCAL_ENGINE_ID
    from voice_channel.local_engine.models import ModelError

    # The channel's URL is known once it listens; the engine only needs it when a conversation starts.
    config = LocalEngineConfig(channel_url="ws://127.0.0.1:9/not-yet", api_key=api_key, port=0)
    click.echo("voice-channel demo: loading the local speech models…", err=True)
    app = create_engine_app(config)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    try:
        await runner.setup()
    except ModelError as exc:
        await runner.cleanup()
        raise SettingsError(f"the local engine cannot start: {exc}") from None
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        engine_port = int(runner.addresses[0][1])
        settings.elevenlabs.base_url = f"http://127.0.0.1:{engine_port}"
        settings.elevenlabs.speech_engine_id = LOCAL_ENGINE_ID
        settings.token.transport = "websocket"
        yield _RunningEngine(app)
    finally:
        await runner.cleanup()
