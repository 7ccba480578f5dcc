"""A paused run's confirmation over the wire: what counts as an answer, and the decision reaching the runtime.

Found in a review of the confirmation flow (2026-12-06): a yes-word said over a question the caller never
heard approved it, and a decision on its way to the runtime was lost when the answering turn was
interrupted or the caller hung up.
"""

from __future__ import annotations

import asyncio

import pytest

import support
from support import Recorder, ScriptedPlugin, conversation
from voice_channel.channel.confirmations import PROMPT_LEAD
from voice_channel.channel.pending import PendingRuns
from voice_channel.runtime import ConfirmationDecision, ConfirmationRequest, RuntimeMessage, TextDelta


def deleter(preamble: str = ""):  # type: ignore[no-untyped-def]
    async def behaviour(message: RuntimeMessage, rec: Recorder):  # type: ignore[no-untyped-def]
        if "delete" not in message.text:
            yield TextDelta(f"You said: {message.text}.")
            return
        if preamble:
            yield TextDelta(preamble)
        yield ConfirmationRequest(id="rm-1", action="Delete every file in your documents folder")
        yield TextDelta("Deleted.")

    return behaviour


async def test_a_yes_word_over_a_question_not_yet_heard_does_not_approve_it(start_channel):
    """The caller says "okay" over the runtime's first words; ElevenLabs' history shows the caller heard
    "Sure, I can" and nothing of the question. That "okay" answers nothing: the question is asked again."""
    plugin = ScriptedPlugin(deleter("Sure, I can clean that up for you right away. "))
    channel = await start_channel(plugins=[plugin], runtime="scripted")
    async with conversation(channel) as client:
        await client.say("delete the old stuff")
        assert PROMPT_LEAD in (await client.reply()).text
        client.heard("Sure, I can")  # the caller barged in here: the question was never played
        reask = (await client.reply(await client.say("okay"))).text
        assert PROMPT_LEAD in reask and "Deleted." not in reask
        client.heard(reask)
        approved = (await client.reply(await client.say("yes"))).text
    assert plugin.recorder.resolved == [("rm-1", ConfirmationDecision(True, "user"))]
    assert "Deleted." in approved


async def test_a_yes_with_nothing_of_the_question_in_the_history_does_not_approve_it(start_channel):
    """The caller spoke before any of the reply holding the question was played: ElevenLabs' history has no
    ``agent`` item before the caller's words (user after user). That "yes" answers nothing: asked again."""
    plugin = ScriptedPlugin(deleter())
    channel = await start_channel(plugins=[plugin], runtime="scripted")
    async with conversation(channel) as client:
        await client.say("delete the old stuff")
        assert PROMPT_LEAD in (await client.reply()).text
        client.heard("")  # nothing of it was played
        reask = (await client.reply(await client.say("yes"))).text
        assert PROMPT_LEAD in reask and "Deleted." not in reask
        assert plugin.recorder.resolved == []
        approved = (await client.reply(await client.say("yes"))).text  # the re-asked question was heard
    assert plugin.recorder.resolved == [("rm-1", ConfirmationDecision(True, "user"))]
    assert "Deleted." in approved


@pytest.mark.parametrize("heard", ["whole", "up to the action"])
async def test_a_yes_once_the_action_was_heard_approves(start_channel, heard):
    """Hearing the question up to its action is enough: the caller may answer before "say yes or no"."""
    plugin = ScriptedPlugin(deleter("Sure. "))
    channel = await start_channel(plugins=[plugin], runtime="scripted")
    async with conversation(channel) as client:
        await client.say("delete the old stuff")
        prompt = (await client.reply()).text
        end = prompt.index("documents folder") + len("documents folder")
        client.heard(prompt if heard == "whole" else prompt[:end])
        reply = (await client.reply(await client.say("yes"))).text
    assert plugin.recorder.resolved == [("rm-1", ConfirmationDecision(True, "user"))]
    assert "Deleted." in reply


def slow_resolution(monkeypatch: pytest.MonkeyPatch) -> tuple[asyncio.Event, asyncio.Event, asyncio.Event]:
    """The runtime's ``resolve`` takes a round trip (OpenClaw's Gateway): (entered, let it answer, answered)."""
    entered, gate, answered = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def slow_resolve(self, request_id: str, decision: ConfirmationDecision) -> None:  # type: ignore[no-untyped-def]
        entered.set()
        await gate.wait()
        self._recorder.resolved.append((request_id, decision))
        answered.set()

    monkeypatch.setattr(support._ScriptedSession, "resolve", slow_resolve)
    return entered, gate, answered


async def test_an_answer_interrupted_while_the_runtime_is_told_still_reaches_it_and_closes_the_run(
    start_channel, monkeypatch
):
    """The caller says "no", then talks on while the decision is on its way to the runtime. The newer
    transcript cancels the answering turn: the runtime still gets the decision, and the paused run, which
    no turn speaks any more, is closed."""
    entered, gate, answered = slow_resolution(monkeypatch)
    plugin = ScriptedPlugin(deleter())
    channel = await start_channel(plugins=[plugin], runtime="scripted")
    async with conversation(channel) as client:
        asked = await client.say("delete notes")
        client.heard((await client.reply()).text)
        await client.say("no")
        await entered.wait()  # the decision is on its way to the runtime...
        reply = await client.reply(await client.say("no no, stop it"))  # ...when the caller speaks again
        gate.set()
        await answered.wait()
    await plugin.recorder.wait_ended(1)
    assert reply.text == "You said: no no, stop it."
    assert plugin.recorder.resolved == [("rm-1", ConfirmationDecision(False, "user"))]
    assert asked in plugin.recorder.cancelled, "the run paused on rm-1 was never closed"


async def test_an_answer_on_its_way_when_the_caller_hangs_up_still_reaches_the_runtime(start_channel, monkeypatch):
    """The caller answers and hangs up at once: the conversation's close waits (bounded) for the decision."""
    entered, gate, _answered = slow_resolution(monkeypatch)
    closing = asyncio.Event()
    close = PendingRuns.close

    async def close_seen(self: PendingRuns) -> None:
        closing.set()
        await close(self)

    monkeypatch.setattr(PendingRuns, "close", close_seen)
    plugin = ScriptedPlugin(deleter())
    channel = await start_channel(plugins=[plugin], runtime="scripted")
    async with conversation(channel) as client:
        await client.say("delete notes")
        client.heard((await client.reply()).text)
        await client.say("no")
        await entered.wait()
    await closing.wait()  # the conversation is ending while the runtime is being told
    gate.set()
    await plugin.recorder.wait_ended(1)
    assert plugin.recorder.resolved == [("rm-1", ConfirmationDecision(False, "user"))]
