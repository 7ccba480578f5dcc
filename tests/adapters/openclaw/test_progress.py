"""Progress speech with the real OpenClaw Gateway (openclaw 2026.9.6): a tool's ``agent`` ``tool`` events
(``start``, ``result``) reach the channel, which speaks while the tool runs.

Its own Gateway, with ``tools.exec.mode: full``: an ``exec`` runs at once (in ``test_gateway.py`` every
command asks for approval first, and the approved command runs in the answer's turn).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openclaw_sandbox import RunningGateway, start_gateway
from structlog.testing import capture_logs

import voice_channel_openclaw.plugin as openclaw_plugin
from processes import stop_process
from support import conversation

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

PHRASE = "Let me check that. "
LINE = "Still working on it. "


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    running = start_gateway(tmp_path_factory.mktemp("openclaw-progress"), {"tools": {"exec": {"mode": "full"}}})
    try:
        yield running
    finally:
        running.sandbox.stop()
        stop_process(running.fake_process)


@pytest.fixture
def start(start_adapter_channel, gateway, tmp_path: Path):  # type: ignore[no-untyped-def]
    async def start(**overrides: Any):  # type: ignore[no-untyped-def]
        openclaw = {
            "gateway_url": gateway.sandbox.url,
            "token": gateway.sandbox.token,
            "device_key_path": str(tmp_path / "device.json"),
        }
        return await start_adapter_channel(openclaw_plugin, "openclaw", openclaw=openclaw, **overrides)

    return start


async def test_progress_phrases_while_the_gateway_runs_an_exec(start, gateway):
    tag = uuid.uuid4().hex[:6]
    channel = await start(
        # No filler: on a cold Gateway it would come first and (within quiet_s) take the start phrase's place.
        turn={"filler_enabled": False},
        progress={
            "delay_s": 0.5,
            "interval_s": 1.0,
            "max_lines": 1,
            "quiet_s": 0.5,
            "start_phrases": [PHRASE.strip()],
            "progress_phrases": [LINE.strip()],
        },
    )
    async with conversation(channel) as client:
        with capture_logs() as logs:
            await client.say(f"please run: sleep 3 && echo progress-{tag}")
            reply = await client.reply(timeout=90)
    assert reply.chunks[:2] == [PHRASE, LINE], reply.chunks
    assert reply.text.endswith(f"progress-{tag}"), reply.text
    spoken = [(e["kind"], e["tool"]) for e in logs if e["event"] == "progress_spoken"]
    assert spoken == [("start", "exec"), ("progress", "exec")]
    # The command really ran on the Gateway, and the model got its output.
    assert await gateway.fake.wait_for(
        lambda calls: [c for c in calls if c["kind"] == "tool_result" and f"progress-{tag}" in str(c["messages"])]
    )
