"""``voice-channel demo``: the channel and a terminal conversation in one command, no key needed."""

from __future__ import annotations

import asyncio
import secrets
import sys

import click
from pydantic import SecretStr

from voice_channel.app import create_app
from voice_channel.cli.common import config_option, fail, load, nested, setup_logging
from voice_channel.cli.talk import run_talk
from voice_channel.server import running_app
from voice_channel.settings import SettingsError

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
@config_option
def demo(runtime: str, log_level: str, ui: bool, config_file: str | None) -> None:
    """Start the channel in-process (ephemeral key, free port) and talk to it from the terminal."""
    api_key = f"sk_demo_{secrets.token_hex(16)}"
    # The page is only served on 127.0.0.1 here, so anonymous tokens are fine; the demo never talks to
    # ElevenLabs (its key is made up), so the page explains that no Speech Engine is configured.
    overrides = nested(
        runtime=runtime, server__host="127.0.0.1", server__port=0, ui__enabled=ui, token__allow_anonymous=True
    )
    settings, pm = load(config_file, overrides)
    settings.elevenlabs.api_key = SecretStr(api_key)
    settings.elevenlabs.speech_engine_id = None
    settings.auth.insecure_no_auth = False
    setup_logging(settings, level=log_level)
    try:
        app = create_app(settings, pm)
    except SettingsError as exc:
        raise fail(str(exc)) from None
    sys.exit(asyncio.run(_demo(app, settings, api_key)))


async def _demo(app, settings, api_key: str) -> int:  # type: ignore[no-untyped-def]
    async with running_app(app, settings) as port:
        url = f"ws://127.0.0.1:{port}{settings.server.path}"
        click.echo(f"voice-channel demo: runtime {settings.runtime!r} at {url}", err=True)
        if settings.ui.enabled:
            click.echo(f"voice-channel demo: browser page at http://127.0.0.1:{port}/", err=True)
        return await run_talk(url, api_key=api_key)
