"""``voice-channel demo`` with the local extra: the engine, the channel in local mode and the page, in one command."""

from __future__ import annotations

import asyncio
import os
import re
import sys

import aiohttp
import pytest

pytestmark = pytest.mark.timeout(120)

CLI = [sys.executable, "-m", "voice_channel.cli"]


async def test_demo_serves_a_page_whose_token_is_a_signed_url_from_the_local_engine():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VOICE_CHANNEL_", "ELEVENLABS_"))}
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        "demo",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    assert proc.stderr is not None and proc.stdin is not None and proc.stdout is not None
    try:
        page = None
        async with asyncio.timeout(60):
            while page is None:
                line = (await proc.stderr.readline()).decode()
                assert line, "demo exited before printing the page URL"
                if match := re.search(r"browser page at (http://127\.0\.0\.1:\d+/) \(press Start and speak\)", line):
                    page = match.group(1)
        async with aiohttp.ClientSession() as session:
            async with session.get(page) as response:
                assert response.status == 200
                assert "Talk to the assistant" in await response.text()
            async with session.get(f"{page}api/token", headers={"Origin": page.rstrip("/")}) as response:
                body = await response.json()
                assert response.status == 200, body
        assert re.fullmatch(
            r"ws://127\.0\.0\.1:\d+/v1/convai/conversation\?agent_id=\w+&conversation_signature=.+", body["signed_url"]
        )
        # The terminal still takes typed turns, and the demo ends with its input.
        proc.stdin.write(b"add milk\n")
        proc.stdin.close()
        out = await asyncio.wait_for(proc.stdout.read(), 30)
        assert out.decode().splitlines() == ["you> add milk", "agent> Added milk."]
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_without_the_extra_the_demo_says_why(monkeypatch):
    import importlib.util

    from voice_channel.local_engine import local_mode

    real = importlib.util.find_spec
    monkeypatch.setattr(
        local_mode.importlib.util, "find_spec", lambda name, *a: None if name == "piper" else real(name, *a)
    )
    reason = local_mode.voice_unavailable()
    assert reason is not None and "piper-tts" in reason and "pip install '.[local]'" in reason
    monkeypatch.setattr("voice_channel.elevenlabs.page.bundle_missing", lambda: ["app.js"])
    monkeypatch.setattr(local_mode.importlib.util, "find_spec", real)
    assert "make web" in (local_mode.voice_unavailable() or "")
