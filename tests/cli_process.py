"""The ``voice-channel`` command run as a real process: one-shot (``run``) or serving (``serve``)."""

from __future__ import annotations

import asyncio
import json
import os
import sys

CLI = [sys.executable, "-m", "voice_channel.cli"]


def env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("VOICE_CHANNEL_", "ELEVENLABS_"))}
    base.update(extra)
    return base


async def run(*args: str, stdin: bytes = b"", timeout: float = 30, **extra: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env(**extra),
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    except BaseException:
        await _kill(proc)  # e.g. a server that started when the test expected a refusal
        raise
    return proc.returncode, out.decode(), err.decode()


async def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


class Served:
    def __init__(self, proc: asyncio.subprocess.Process, port: int, startup: list[dict]) -> None:
        self.proc, self.port, self.startup = proc, port, startup

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"


async def serve(*args: str, **extra: str) -> Served:
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        "serve",
        "--port",
        "0",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env(VOICE_CHANNEL_LOG_FORMAT="json", **extra),
    )
    assert proc.stderr is not None
    startup = []
    try:
        while True:
            line = await asyncio.wait_for(proc.stderr.readline(), 30)
            assert line, "serve exited before it was ready"
            event = json.loads(line)
            startup.append(event)
            if event.get("event") == "listening":
                return Served(proc, event["port"], startup)
    except BaseException:
        await _kill(proc)
        raise
