"""Progress speech with Hermes Agent: its ``pre_tool_call``/``post_tool_call`` plugin hooks report a voice
call's tool runs, and the channel speaks while a real tool (``terminal``) runs in the real gateway."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from structlog.testing import capture_logs

import hermes_support
from hermes_support import PLATFORM
from voice_channel import ToolActivity, ToolPhase
from voice_channel.channel.confirmations import PROMPT_LEAD, recognize_prompt
from voice_channel.settings import ProgressSettings
from voice_channel_hermes.stream import ReplyStream
from voice_channel_hermes.tools import ToolEvents

pytestmark = pytest.mark.asyncio(loop_scope="session")

KEY = f"agent:main:{PLATFORM}:dm:conv-tools"
PHRASE = "Let me check that. "


def in_agent_thread(hook: Any, **kwargs: Any) -> None:
    hermes_support.in_agent_thread(hook, session_key=KEY, **kwargs)


def speak_progress(gateway: Any, monkeypatch: pytest.MonkeyPatch, **fields: Any) -> ProgressSettings:
    """Progress speech for this test: ``fields`` of :class:`ProgressSettings`, starting with :data:`PHRASE`."""
    progress = ProgressSettings(start_phrases=[PHRASE.strip()], **fields)
    monkeypatch.setattr(gateway.adapter._settings, "progress", progress)
    return progress


async def test_tool_hooks_deliver_a_voice_sessions_tool_runs_to_the_adapters_loop():
    delivered: asyncio.Queue[tuple[str, ToolActivity]] = asyncio.Queue()
    tools = ToolEvents()
    in_agent_thread(tools.on_start, tool_name="terminal", tool_call_id="c0")  # not attached yet: dropped
    tools.attach(asyncio.get_running_loop(), lambda key, activity: delivered.put_nowait((key, activity)))
    in_agent_thread(tools.on_start, platform="telegram", tool_name="terminal", tool_call_id="c9")  # not a call
    assert tools.on_start(tool_name="terminal", tool_call_id="c8") is None, "outside a session; answers nothing"
    in_agent_thread(tools.on_start, tool_name="terminal", tool_call_id="c1", args={"command": "ls"}, turn_id="t")
    in_agent_thread(tools.on_end, tool_name="terminal", tool_call_id="c1", result="{}", status="ok")
    assert await delivered.get() == (KEY, ToolActivity(ToolPhase.START, "terminal", "c1"))
    assert await delivered.get() == (KEY, ToolActivity(ToolPhase.END, "terminal", "c1"))
    tools.detach()
    in_agent_thread(tools.on_end, tool_name="terminal", tool_call_id="c2")
    loop = asyncio.get_running_loop()
    barrier = loop.create_future()
    loop.call_soon_threadsafe(barrier.set_result, None)  # callbacks run in order: anything sent before ran first
    await barrier
    assert delivered.empty()


async def test_a_reply_takes_tool_activity_only_while_it_is_open():
    stream = ReplyStream("m1")
    stream.tool(ToolActivity(ToolPhase.START, "terminal", "c1"))
    stream.complete("success")
    stream.tool(ToolActivity(ToolPhase.END, "terminal", "c1"))  # after Hermes finished: dropped
    assert [event async for event in stream.events()] == [ToolActivity(ToolPhase.START, "terminal", "c1")]


async def test_caller_hears_progress_while_hermes_runs_a_real_tool(gateway, llm, monkeypatch):
    progress = speak_progress(gateway, monkeypatch, delay_s=0.3, interval_s=1.0, max_lines=1, quiet_s=0.2)
    async with gateway.client() as client:
        with capture_logs() as logs:
            await client.say("Please RUN:sleep 2 && echo progress-heard")
            reply = await client.reply(timeout=60)
    assert reply.chunks[0] == PHRASE, reply.chunks
    assert reply.chunks[1].strip() in progress.phrases_for("en")[1], reply.chunks
    assert "Done. Tool said:" in reply.text and "progress-heard" in reply.text
    spoken = [(e["kind"], e["tool"]) for e in logs if e["event"] == "progress_spoken"]
    assert spoken == [("start", "terminal"), ("progress", "terminal")]
    assert any("progress-heard" in result for result in llm.tool_results("progress-heard")), "the tool really ran"


async def test_a_dangerous_command_approved_by_voice_is_covered_while_it_runs(gateway, llm, monkeypatch, scratch):
    """Hermes reports the tool (``pre_tool_call``) before it asks for approval: the turn that approves it
    speaks for it, since that is when it runs."""
    speak_progress(gateway, monkeypatch, delay_s=0.3, interval_s=30.0, max_lines=0, quiet_s=0.2)
    target = scratch / "victim"
    target.mkdir()
    (target / "keep.txt").write_text("x")
    async with gateway.client() as client:
        await client.say(f"Please RUN:sleep 2 && rm -rf {target}")
        prompt = await client.reply(timeout=30)
        client.heard(prompt.text)
        assert PROMPT_LEAD in prompt.text, prompt.text
        assert target.exists(), "ran before the caller answered"
        await client.say(recognize_prompt(prompt.text).code_word or "yes")
        reply = await client.reply(timeout=60)
    assert reply.chunks[0] == PHRASE, reply.chunks
    assert "Done. Tool said" in reply.text
    assert not target.exists()


async def test_an_interruption_while_a_tool_runs_is_answered_before_the_tool_would_end(gateway, llm, monkeypatch):
    """Noticed in stop 22: untested end to end. The caller talks while Hermes's terminal tool runs: the new
    utterance is answered without waiting for the tool, and nothing of the old run (its tool's result) is
    spoken later."""
    speak_progress(gateway, monkeypatch, delay_s=0.1, interval_s=30.0, max_lines=0, quiet_s=0.1)
    async with gateway.client() as client:
        await client.say("Please RUN:sleep 10 && echo interrupted-tool-finished")
        first = await client.receive(timeout=30)
        assert first["content"] == PHRASE, first  # the tool has started
        client.heard(PHRASE)
        await client.say("Never mind, hello instead.")
        reply = await client.reply(timeout=30)
        # Answered while the tool still ran: its result never reached the model before this reply.
        assert not llm.tool_results("interrupted-tool-finished")
        client.heard(reply.text)
        await client.say("And one more thing.")
        later = await client.reply(timeout=30)
    assert "hello instead" in reply.text.lower(), reply.text
    for text in (reply.text, later.text):
        assert "Tool said" not in text and "interrupted-tool-finished" not in text, text
