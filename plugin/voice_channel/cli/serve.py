"""``voice-channel serve``: run the Speech Engine endpoint."""

from __future__ import annotations

import asyncio

import click
import structlog

from voice_channel.app import create_app
from voice_channel.cli.common import config_option, fail, load, nested, setup_logging
from voice_channel.server import serve_until_stopped
from voice_channel.settings import SettingsError

NO_KEY = (
    "no ElevenLabs API key: set ELEVENLABS_API_KEY (or elevenlabs.api_key in the config file); "
    "it verifies that connections really come from ElevenLabs. To run without that check "
    "(only behind an IP allowlist or a shared-secret header), pass --insecure-no-auth."
)


@click.command()
@click.option("--runtime", default=None, help="Runtime that answers (see `voice-channel plugins`). Default: echo.")
@click.option("--host", default=None, help="Interface to listen on. Default: 127.0.0.1.")
@click.option("--port", type=int, default=None, help="TCP port. Default: 8765.")
@click.option("--path", default=None, help="WebSocket path. Default: /ws.")
@click.option("--insecure-no-auth", is_flag=True, default=None, help="Do not verify ElevenLabs' JWT. Dangerous.")
@click.option("--ui/--no-ui", default=None, help="Serve the browser page at / (ui.enabled). Default: off.")
@click.option(
    "--exit-on-stdin-eof",
    is_flag=True,
    default=False,
    help="Shut down when standard input is closed (for supervisors: their death closes the pipe).",
)
@config_option
def serve(
    runtime: str | None,
    host: str | None,
    port: int | None,
    path: str | None,
    insecure_no_auth: bool | None,
    ui: bool | None,
    exit_on_stdin_eof: bool,
    config_file: str | None,
) -> None:
    """Serve the Speech Engine WebSocket endpoint (point your engine's ws_url here)."""
    overrides = nested(
        runtime=runtime,
        server__host=host,
        server__port=port,
        server__path=path,
        auth__insecure_no_auth=insecure_no_auth or None,
        ui__enabled=ui,
    )
    settings, pm = load(config_file, overrides)
    if settings.elevenlabs.api_key is None and not settings.auth.insecure_no_auth:
        raise fail(NO_KEY)
    setup_logging(settings)
    log = structlog.get_logger("voice_channel.cli")
    if settings.auth.insecure_no_auth:
        log.warning(
            "INSECURE_NO_AUTH",
            message="JWT verification is OFF: anyone who can reach this port can open conversations "
            "and spend your runtime's quota. Use only behind an IP allowlist or a shared-secret header.",
            shared_secret=settings.auth.header_secret is not None,
        )
    try:
        app = create_app(settings, pm)
    except SettingsError as exc:
        raise fail(str(exc)) from None

    def ready(port: int) -> None:
        if settings.ui.enabled:
            shown = settings.server.public_url or f"http://{settings.server.host}:{port}"
            log.info("page", url=f"{shown}/")

    try:
        asyncio.run(
            serve_until_stopped(
                app, settings, on_ready=ready, exit_on_stdin_eof=exit_on_stdin_eof, ignore_sigterm_once_stopped=True
            )
        )
    except SettingsError as exc:  # a runtime factory refusing the settings at start-up
        raise fail(str(exc)) from None
    except OSError as exc:
        raise fail(f"cannot listen on {settings.server.host}:{settings.server.port}: {exc.strerror or exc}") from None
