"""``voice-channel serve``: run the Speech Engine endpoint."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

import click
import structlog

from voice_channel.app import CONFIG_ENV, create_app
from voice_channel.channel.auth import protection
from voice_channel.cli.common import config_option, fail, load, nested, setup_logging
from voice_channel.elevenlabs.shared_ratelimit import check_redis
from voice_channel.extras import install_hint
from voice_channel.serving.server import serve_until_stopped
from voice_channel.settings import ENV_PREFIX, Settings, SettingsError

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
    "--workers",
    type=click.IntRange(1, 256),
    default=None,
    help="Worker processes (server.workers); more than 1 runs gunicorn with aiohttp's worker (extra `scale`).",
)
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
    workers: int | None,
    exit_on_stdin_eof: bool,
    config_file: str | None,
) -> None:
    """Serve the Speech Engine WebSocket endpoint (point your engine's ws_url here)."""
    flags: dict[str, Any] = {
        "runtime": runtime,
        "server__host": host,
        "server__port": port,
        "server__path": path,
        "server__workers": workers,
        "auth__insecure_no_auth": insecure_no_auth or None,
        "ui__enabled": ui,
    }
    settings, pm = load(config_file, nested(**flags))
    if settings.elevenlabs.api_key is None and not settings.auth.insecure_no_auth:
        raise fail(NO_KEY)
    if settings.server.workers > 1:
        if exit_on_stdin_eof:
            raise fail("--exit-on-stdin-eof works with one worker only (server.workers: 1)")
        _exec_gunicorn(settings, flags, config_file)
    setup_logging(settings)
    log = structlog.get_logger("voice_channel.cli")
    protected_by = protection(settings)
    if settings.auth.insecure_no_auth:
        if protected_by == "nothing":
            message = (
                "JWT verification is OFF and no shared secret is set: anyone who can reach this port can open"
                " conversations and spend your runtime's quota. Use only behind an IP allowlist."
            )
        else:
            message = (
                "JWT verification is OFF: only the shared secret in the"
                f" {settings.auth.header_name} header keeps others out; anyone who has it can open conversations."
            )
        log.warning("INSECURE_NO_AUTH", message=message, protected_by=protected_by)
    try:
        app = create_app(settings, pm, drain=True)
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


def _exec_gunicorn(settings: Settings, flags: dict[str, Any], config_file: str | None) -> None:
    """Become gunicorn (same process id: signals from a supervisor reach gunicorn's master directly).

    The flags travel as ``VOICE_CHANNEL_*`` variables and the config file as ``VOICE_CHANNEL_CONFIG``, read by
    ``voice_channel.gunicorn_conf`` in the master and by ``app_from_environment`` in each worker.
    """
    if importlib.util.find_spec("gunicorn") is None:
        raise fail(f"--workers needs gunicorn: {install_hint('scale')}")
    try:
        check_redis(settings)
    except SettingsError as exc:
        raise fail(str(exc)) from None
    env = dict(os.environ)
    for key, value in flags.items():
        if value is not None:
            env[ENV_PREFIX + key.upper()] = str(value).lower() if isinstance(value, bool) else str(value)
    if config_file is not None:
        env[CONFIG_ENV] = str(Path(config_file).resolve())
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "--config",
        "python:voice_channel.gunicorn_conf",
        "voice_channel.app:app_from_environment()",
    ]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, env)
