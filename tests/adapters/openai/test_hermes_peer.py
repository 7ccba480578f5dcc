"""The ``openai`` runtime against a real peer: Hermes Agent's own OpenAI-compatible API server.

``hermes gateway run`` (hermes-agent 0.19, extra ``hermes``) runs in a child process with its own
``HERMES_HOME`` (Hermes reads and writes its home and environment at import time, so it never
runs inside the test process), its API server platform enabled on a free loopback port, and its
model pointed at the fake OpenAI server (another child process). So the path under test is:
client playing ElevenLabs → voice channel → Hermes API server → Hermes agent → fake model.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from structlog.testing import capture_logs

import voice_channel_openai.plugin as openai_plugin
from fake_openai import RemoteFake
from processes import free_port, port_open, require, start_fake_openai, stop_process, wait_until
from support import conversation

pytestmark = pytest.mark.slow

API_SERVER_KEY = "hermes-peer-key-0123456789abcdef"


def _hermes_cli() -> str | None:
    found = Path(sys.executable).with_name("hermes")
    return str(found) if found.exists() else shutil.which("hermes")


@pytest.fixture(scope="module")
def hermes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    cli = _hermes_cli()
    require(
        importlib.util.find_spec("hermes_cli") is not None and cli is not None,
        "hermes-agent is not installed (pip install -e '.[hermes]'; `make test` does it)",
    )
    base = tmp_path_factory.mktemp("hermes-peer")
    home = base / "home"
    home.mkdir()
    fake, fake_port = start_fake_openai(base / "fake.log", cold_start_s=3.0)
    port = free_port()
    config = {
        "model": {
            "provider": "custom",
            "base_url": f"http://127.0.0.1:{fake_port}/v1",
            "api_key": "sk-fake",
            "default": "fake-model",
        },
        # The shell tool, for the progress-speech test (the fake model calls it on "terminal: <command>").
        "toolsets": ["terminal"],
        "agent": {"environment_probe": False},
        "security": {"tirith_enabled": False},
        "approvals": {"mode": "manual"},
        "platforms": {
            "api_server": {"enabled": True, "extra": {"host": "127.0.0.1", "port": port, "key": API_SERVER_KEY}}
        },
    }
    (home / "config.yaml").write_text(yaml.safe_dump(config))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("HERMES_", "API_SERVER_"))},
        "HERMES_HOME": str(home),
        "HOME": str(base),
        "HERMES_DISABLE_LAZY_INSTALLS": "1",
        "TIRITH_ENABLED": "false",
    }
    with (base / "hermes.log").open("ab") as log:
        process = subprocess.Popen(
            [cli, "gateway", "run"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=base
        )
    try:
        wait_until(lambda: port_open(port), timeout=90, what="Hermes API server", process=process)
        yield {"base_url": f"http://127.0.0.1:{port}/v1", "fake": f"http://127.0.0.1:{fake_port}", "log": base}
    finally:
        stop_process(process)
        stop_process(fake)


@pytest.fixture
def start(start_adapter_channel, hermes):  # type: ignore[no-untyped-def]
    async def start(progress: dict[str, Any] | None = None, **openai: Any):  # type: ignore[no-untyped-def]
        settings = {"base_url": hermes["base_url"], "model": "hermes-agent", "api_key": API_SERVER_KEY, **openai}
        return await start_adapter_channel(
            openai_plugin, "openai", openai=settings, turn={"first_text_deadline_s": 2.0}, progress=progress or {}
        )

    return start


def _boundary(channel) -> str:  # type: ignore[no-untyped-def]
    from voice_channel.serving.keys import STATE

    (conv,) = channel.app[STATE].conversations
    return conv.boundary


async def test_reply_streams_through_hermes(start, hermes):
    fake = RemoteFake(hermes["fake"])
    channel = await start()
    async with conversation(channel) as client:
        await client.say("hello hermes")
        reply = await client.reply(timeout=60)
        boundary = _boundary(channel)
    assert reply.text.endswith("Hello from the fake model.")
    calls = await fake.wait_for(lambda calls: [c for c in calls if "hello hermes" in c["user"] and c["finished"]])
    sent = calls[-1]["messages"]
    system = "\n".join(m["content"] for m in sent if m["role"] == "system")
    assert f"<<caller-speech {boundary}>>" in system, "Hermes layers our system prompt (boundary rule) on its own"
    assert sent[-1]["role"] == "user"
    assert f"<<caller-speech {boundary}>>\nhello hermes\n<<end-caller-speech {boundary}>>" in str(sent[-1]["content"])


async def test_history_reaches_the_model_through_hermes(start, hermes):
    fake = RemoteFake(hermes["fake"])
    channel = await start()
    async with conversation(channel) as client:
        await client.say("my name is Ada")
        first = await client.reply(timeout=60)
        client.heard(first.text)
        await client.say("what is my name")
        await client.reply(timeout=60)
    calls = await fake.wait_for(lambda calls: [c for c in calls if "what is my name" in c["user"] and c["finished"]])
    dialogue = [(m["role"], str(m["content"])) for m in calls[-1]["messages"] if m["role"] in ("user", "assistant")]
    assert [role for role, _ in dialogue[-3:]] == ["user", "assistant", "user"]
    assert "my name is Ada" in dialogue[-3][1]
    # What the caller heard: the reply, after the filler when Hermes took longer than the first-text deadline
    # (a loaded machine).
    assert first.text.endswith("Hello from the fake model.")
    assert dialogue[-2][1] == first.text


async def test_interruption_closes_the_stream_and_hermes_interrupts_its_agent(start, hermes):
    fake = RemoteFake(hermes["fake"])
    channel = await start()
    log = hermes["log"] / "home" / "logs" / "gateway.log"
    async with conversation(channel) as client:
        await client.say("something slow please")
        heard = ""
        while not heard.startswith("tok"):  # wait for model text (not the filler): the run is streaming
            heard = (await client.receive(timeout=60))["content"]
        client.heard(heard)  # as ElevenLabs reports what was played before the barge-in
        await client.say("hello instead")
        reply = await client.reply(timeout=60)
    assert reply.text.endswith("Hello from the fake model.")
    # Hermes noticed our stream close and interrupted the agent (its own upstream socket to the
    # model is closed lazily, so the fake model is not the witness here: Hermes's log is).
    wait_until(
        lambda: "SSE client disconnected; interrupted agent task" in log.read_text(errors="replace"),
        timeout=30,
        what="Hermes logs the interruption",
    )
    (slow,) = [c for c in await fake.sync() if c["kind"] == "slow"]
    assert "hello instead" not in str(slow["messages"])


async def test_wrong_key_is_an_apology_and_a_logged_401(start):
    channel = await start(api_key="not-the-key-0123456789")
    with capture_logs() as logs:
        async with conversation(channel) as client:
            await client.say("hello")
            reply = await client.reply(timeout=30)
    assert reply.text == "Sorry, something went wrong on my side."
    assert any(e["event"] == "openai_upstream_error" and e["status"] == 401 for e in logs)


async def test_progress_phrase_while_hermes_runs_a_real_tool(start, hermes):
    """Hermes's API server runs its terminal tool (a real `sleep`) and reports it as `hermes.tool.progress`
    events: the caller hears the start phrase while it runs, then the answer."""
    fake = RemoteFake(hermes["fake"])
    channel = await start(progress={"delay_s": 0.3, "quiet_s": 0.0, "start_phrases": ["Let me check that."]})
    async with conversation(channel) as client:
        with capture_logs() as logs:
            await client.say("terminal: sleep 2")
            reply = await client.reply(timeout=90)
    # A filler may come first when Hermes is slow to start its agent; the phrase comes while the tool runs.
    assert "Let me check that. " in reply.chunks, reply.chunks
    answer = next(i for i, chunk in enumerate(reply.chunks) if chunk.startswith("Command"))
    assert reply.chunks.index("Let me check that. ") < answer, reply.chunks
    (spoken,) = [e for e in logs if e["event"] == "progress_spoken"]
    assert spoken["tool"] == "terminal" and spoken["kind"] == "start" and spoken["origin"] == "builtin"
    calls = await fake.wait_for(lambda calls: [c for c in calls if c["kind"] == "tool_result" and c["finished"]])
    assert "sleep 2" in str(calls[-1]["messages"]), "the model saw the tool's result: the tool really ran"
