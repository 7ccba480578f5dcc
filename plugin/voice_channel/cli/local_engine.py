"""``voice-channel local-engine``: the local ElevenLabs stand-in (the ``local`` extra)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Any

import click
from pydantic import ValidationError

from voice_channel.cli.common import fail
from voice_channel.logging import configure_logging

__all__ = ["local_engine"]


@click.command("local-engine")
@click.option(
    "--channel-url",
    required=True,
    help="The channel's Speech Engine WebSocket, e.g. ws://127.0.0.1:8765/ws.",
)
@click.option(
    "--api-key",
    envvar="ELEVENLABS_API_KEY",
    show_envvar=True,
    required=True,
    help="The channel's key: signs the handshake JWT and guards get-signed-url.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", type=int, default=8770, show_default=True, help="TCP port (0: a free one).")
@click.option("--vad", type=click.Choice(["webrtc", "silero"]), default="webrtc", show_default=True)
@click.option("--end-of-turn-ms", type=int, default=400, show_default=True, help="Silence that ends a turn.")
@click.option("--tts", type=click.Choice(["auto", "piper", "espeak"]), default="auto", show_default=True)
@click.option("--stt-window-s", type=float, default=20.0, show_default=True, help="Whisper encoder window (5-30).")
@click.option("--cascade-timeout-s", type=float, default=4.0, show_default=True, help="Re-send a turn after this.")
@click.option("--keyword", "keywords", multiple=True, help="Word to bias speech recognition toward (repeatable).")
@click.option(
    "--ignore-term",
    "ignore_terms",
    multiple=True,
    help="Backchannel that does not interrupt the agent, e.g. uh-huh (repeatable; as the engine's"
    " turn.interruption_ignore_terms).",
)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
)
def local_engine(
    log_level: str, api_key: str, keywords: tuple[str, ...], ignore_terms: tuple[str, ...], **options: Any
) -> None:
    """Serve a local stand-in for ElevenLabs: real speech in the browser, no cloud.

    Browsers connect with @elevenlabs/client in WebSocket mode using a signed URL from
    GET /v1/convai/conversation/get-signed-url (header xi-api-key); each conversation is played
    toward the channel exactly as ElevenLabs plays it.
    """
    try:
        from voice_channel.local_engine.config import LocalEngineConfig
    except ImportError as exc:  # pragma: no cover - the config needs only pydantic
        raise fail(f"the local engine cannot load: {exc}") from None
    try:
        config = LocalEngineConfig(
            api_key=api_key, keywords=list(keywords), interruption_ignore_terms=list(ignore_terms), **options
        )
    except ValidationError as exc:
        problems = "; ".join(f"--{'-'.join(map(str, e['loc'])).replace('_', '-')}: {e['msg']}" for e in exc.errors())
        raise fail(problems) from None
    configure_logging(log_level, "auto", secrets=[api_key])
    try:
        asyncio.run(serve_engine(config))
    except OSError as exc:
        raise fail(f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}") from None


async def serve_engine(config: Any, *, on_ready: Any = None, stop: asyncio.Event | None = None) -> None:
    """Load the models, serve until SIGINT/SIGTERM (or ``stop``), shut down cleanly."""
    from aiohttp import web

    from voice_channel.local_engine.app import SIGNED_URL_PATH, create_engine_app
    from voice_channel.local_engine.models import ModelError

    try:
        app = create_engine_app(config)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
    except ModelError as exc:
        raise fail(str(exc)) from None
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        site = web.TCPSite(runner, config.host, config.port)
        await site.start()
        port = int(runner.addresses[0][1])
        click.echo(
            f"local engine ready: signed URLs at http://{config.host}:{port}{SIGNED_URL_PATH}?agent_id=local "
            f"(header xi-api-key); channel {config.channel_url}",
            err=True,
        )
        if on_ready is not None:
            on_ready(port)
        await stop.wait()
    finally:
        await runner.cleanup()
