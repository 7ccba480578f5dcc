"""``voice-channel serve --workers N`` becomes gunicorn (same process), and bad start-up conditions stop
gunicorn's master with one clear line before any worker starts."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys

from deploy_support import need_module
from processes import ROOT, free_port, port_open, wait_until
from voice_channel.elevenlabs.client import SpeechEngineClient

KEY = "sk_workers_cli_test_0123456789"

need_module("gunicorn", "scale")
need_module("redis", "scale")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VOICE_CHANNEL_", "ELEVENLABS_"))}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(extra)
    return env


async def test_serve_with_workers_runs_gunicorn_with_that_many_workers(tmp_path):
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "voice_channel.cli",
            "serve",
            "--workers",
            "2",
            "--port",
            str(port),
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            env=clean_env(ELEVENLABS_API_KEY=KEY, VOICE_CHANNEL_LOG_FORMAT="json"),
        )
    try:
        await asyncio.to_thread(
            wait_until,
            lambda: len(re.findall(r"Booting worker with pid", log.read_text())) == 2 and port_open(port),
            timeout=60,
            what="voice-channel serve --workers 2",
        )
        text = log.read_text()
        assert "Using worker: aiohttp.GunicornWebWorker" in text
        assert f"Listening at: http://127.0.0.1:{port} ({proc.pid})" in text, "gunicorn's master is the same process"
        async with SpeechEngineClient(f"ws://127.0.0.1:{port}/ws", api_key=KEY) as client:
            await client.say("through gunicorn")
            assert (await client.reply()).text == "You said: through gunicorn"
    finally:
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 60)
    assert code == 0
    assert len(re.findall(r"Worker exiting", log.read_text())) == 2


async def run(*args: str, **env: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=clean_env(**env), cwd=ROOT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode()


async def test_unreachable_redis_stops_serve_workers_with_one_clear_line():
    code, out = await run(
        sys.executable,
        "-m",
        "voice_channel.cli",
        "serve",
        "--workers",
        "2",
        "--port",
        "0",
        ELEVENLABS_API_KEY=KEY,
        VOICE_CHANNEL_REDIS__URL=f"redis://127.0.0.1:{free_port()}/0",
    )
    assert code == 2
    assert "setting 'redis.url' (env VOICE_CHANNEL_REDIS__URL): Redis does not answer" in out
    assert "Traceback" not in out and "Booting worker" not in out


async def test_gunicorn_refuses_to_start_on_unreachable_redis_or_bad_settings():
    gunicorn = [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        "deploy/gunicorn.conf.py",
        "voice_channel.app:app_from_environment()",
    ]
    code, out = await run(
        *gunicorn,
        ELEVENLABS_API_KEY=KEY,
        VOICE_CHANNEL_SERVER__PORT=str(free_port()),
        VOICE_CHANNEL_REDIS__URL=f"redis://127.0.0.1:{free_port()}/0",
    )
    assert code != 0
    assert "voice-channel: setting 'redis.url' (env VOICE_CHANNEL_REDIS__URL): Redis does not answer" in out
    assert "Traceback" not in out and "Booting worker" not in out
    code, out = await run(*gunicorn, ELEVENLABS_API_KEY=KEY, VOICE_CHANNEL_SERVER__DRAIN_TIMEOUT_S="soon")
    assert code != 0
    assert "setting 'server.drain_timeout_s' (env VOICE_CHANNEL_SERVER__DRAIN_TIMEOUT_S)" in out
    assert "Traceback" not in out
