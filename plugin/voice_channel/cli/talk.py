"""``voice-channel talk``: a terminal conversation, playing the ElevenLabs side."""

from __future__ import annotations

import asyncio
import os
import sys

import aiohttp
import click
from yarl import URL

from voice_channel.channel.languages import LANGUAGES, normalize_language
from voice_channel.cli.common import fail, header
from voice_channel.elevenlabs.client import SpeechEngineClient
from voice_channel.settings import ConfirmationSettings
from voice_channel.talk import Talk, stdin_lines


@click.command()
@click.option("--url", required=True, help="The channel's WebSocket URL, e.g. ws://127.0.0.1:8765/ws.")
@click.option(
    "--api-key",
    envvar="ELEVENLABS_API_KEY",
    default=None,
    show_envvar=True,
    help="Key to sign the handshake JWT with (the server's key).",
)
@click.option("--header", "headers", multiple=True, metavar="NAME:VALUE", help="Extra handshake header (repeatable).")
@click.option(
    "--language",
    help="Speak in this language (en, es, de, fr, pt): sent as the language header, as an engine configured with"
    " `engine update --language` sends it.",
)
@click.option(
    "--language-header",
    default=ConfirmationSettings.model_fields["language_header"].default,
    show_default=True,
    help="The server's confirmations.language_header.",
)
@click.option(
    "--reply-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=60.0,
    show_default=True,
    help="Seconds to wait for a reply.",
)
def talk(
    url: str,
    api_key: str | None,
    headers: tuple[str, ...],
    language: str | None,
    language_header: str,
    reply_timeout: float,
) -> None:
    """Talk to a voice channel from the terminal: each line is one caller turn.

    Typing while a reply streams interrupts it. With input from a pipe or file, each line waits
    for the previous reply and the program exits at the end of input.
    """
    try:
        parsed = URL(url)
    except ValueError as exc:
        raise fail(f"--url is not a URL ({exc}), e.g. ws://127.0.0.1:8765/ws") from None
    if parsed.scheme not in ("ws", "wss", "http", "https") or not parsed.host:
        raise fail(f"--url must be a ws:// or wss:// URL, e.g. ws://127.0.0.1:8765/ws, got {url!r}")
    extra = dict(header(value) for value in headers)
    if language is not None:
        code = normalize_language(language)
        if code is None:
            raise fail(f"--language must be one of {', '.join(LANGUAGES)} (or a tag such as pt-BR), got {language!r}")
        extra[language_header] = code
    sys.exit(asyncio.run(run_talk(url, api_key=api_key, headers=extra, reply_timeout=reply_timeout)))


async def run_talk(
    url: str, *, api_key: str | None, headers: dict[str, str] | None = None, reply_timeout: float = 60.0
) -> int:
    interactive = sys.stdin.isatty()
    client = SpeechEngineClient(url, api_key=api_key, headers=headers)
    try:
        await client.connect()
    except aiohttp.WSServerHandshakeError as exc:
        hint = " (is the API key the server's?)" if exc.status == 401 else ""
        raise fail(f"the server refused the conversation: HTTP {exc.status} {exc.message}{hint}") from None
    except (aiohttp.ClientError, OSError) as exc:
        raise fail(f"cannot connect to {url}: {exc}") from None
    if interactive:
        click.echo("Type a line and press Enter to speak; Ctrl-D ends the conversation.", err=True)
    try:
        talker = Talk(
            client,
            wait_for_reply=not interactive or bool(os.environ.get("VOICE_CHANNEL_TALK_WAIT")),
            reply_timeout=reply_timeout,
            echo_input=not interactive,  # a terminal has already shown the line as it was typed
        )
        return await talker.run(stdin_lines())
    finally:
        await client.disconnect()
