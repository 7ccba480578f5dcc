"""gunicorn settings for voice-channel.

    gunicorn -c python:voice_channel.gunicorn_conf 'voice_channel.app:app_from_environment()'

``deploy/gunicorn.conf.py`` imports this module (copy and adjust that one). Everything is derived from the
voice-channel settings (``VOICE_CHANNEL_*`` variables and ``VOICE_CHANNEL_CONFIG``), read once here in the
master, so that gunicorn and the workers cannot disagree:

* ``bind`` = ``server.host:server.port``; ``workers`` = ``server.workers`` (gunicorn's ``-w`` overrides it).
  Each worker holds its own conversations (a WebSocket stays with the worker that accepted it), so
  ``server.max_conversations`` is per worker.
* ``worker_class`` = aiohttp's own ``aiohttp.GunicornWebWorker``.
* ``graceful_timeout`` = ``server.drain_timeout_s + server.shutdown_timeout_s`` + 5 s: a worker told to
  stop (SIGTERM, or a HUP's rolling restart) drains, then closes what is left with 1001, and gunicorn
  must not kill it before (:mod:`voice_channel.serving.drain`). The drain runs while aiohttp's worker still
  serves (``post_worker_init`` takes over its SIGTERM): it stops accepting on the shared socket, waits,
  then lets the worker stop as usual. The worker keeps reporting to the master meanwhile, so gunicorn's
  ``timeout`` (a silent worker is killed) stays at its 30 s.
* SIGINT/SIGQUIT to the master (a quick shutdown) cut the workers' drain short (``worker_int``).
* Metrics: ``PROMETHEUS_MULTIPROC_DIR`` is set for the workers before they start (a new temporary
  directory unless it is set already, e.g. to a Kubernetes emptyDir), wiped at start, a dead worker's
  live gauges removed (``child_exit``), and a directory made here removed at exit.
* Start-up checks: invalid settings, or a configured Redis that does not answer, stop the master with
  one clear message before any worker starts.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from voice_channel.settings import Settings, SettingsError

__all__ = [
    "bind",
    "child_exit",
    "control_socket_disable",
    "graceful_timeout",
    "on_exit",
    "on_starting",
    "post_worker_init",
    "worker_class",
    "worker_int",
    "workers",
]

_MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def _load_settings() -> Settings:
    # Plugins first: they add settings sections (the same order as the CLI and app_from_environment).
    from voice_channel.app import CONFIG_ENV
    from voice_channel.plugins import PluginHooks, get_plugin_manager
    from voice_channel.settings import build_settings_class, load_settings

    settings_cls = build_settings_class(PluginHooks(get_plugin_manager()).settings_sections())
    return load_settings(config_file=os.environ.get(CONFIG_ENV) or None, settings_cls=settings_cls)


try:
    _settings = _load_settings()
except SettingsError as exc:
    raise SystemExit(f"voice-channel: {exc}") from None


def _bind(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


bind = [_bind(_settings.server.host, _settings.server.port)]
workers = _settings.server.workers
worker_class = "aiohttp.GunicornWebWorker"
# gunicorn's control socket (gunicornc) defaults to one path per user: two servers on a host would clash.
control_socket_disable = True
graceful_timeout = int(_settings.server.drain_timeout_s + _settings.server.shutdown_timeout_s + 5)

# Set before any worker imports prometheus-client (it picks its storage when imported).
_made_multiproc_dir: str | None = None
if _settings.metrics.enabled and not os.environ.get(_MULTIPROC_ENV):
    _made_multiproc_dir = tempfile.mkdtemp(prefix="voice-channel-metrics-")
    os.environ[_MULTIPROC_ENV] = _made_multiproc_dir


def on_starting(server: Any) -> None:
    """Master, once: check Redis; start metrics from zero (prometheus-client's rule for its directory)."""
    from voice_channel.elevenlabs.shared_ratelimit import check_redis

    try:
        check_redis(_settings)
    except SettingsError as exc:
        print(f"voice-channel: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    directory = os.environ.get(_MULTIPROC_ENV)
    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
        for stale in Path(directory).glob("*.db"):
            stale.unlink()


def post_worker_init(worker: Any) -> None:
    """Worker: on SIGTERM, drain first, then stop as aiohttp's worker does (:mod:`voice_channel.serving.workers`)."""
    from voice_channel.serving.workers import install_drain

    install_drain(worker)


def worker_int(worker: Any) -> None:
    """Worker, on SIGINT/SIGQUIT (quick shutdown): close open conversations now."""
    from voice_channel.serving.workers import cut_drain

    cut_drain(worker)


def child_exit(server: Any, worker: Any) -> None:
    """Master: a worker is gone; its open-conversations gauge must not count any more."""
    if os.environ.get(_MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:
    """Master, at exit: remove the metrics directory made above."""
    if _made_multiproc_dir is not None:
        shutil.rmtree(_made_multiproc_dir, ignore_errors=True)
