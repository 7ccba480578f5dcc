"""A confirmation nobody answered: the runtime is told "deny", and nothing its run says afterwards is spoken.

The runtime here behaves like a tool-using agent (OpenClaw, Hermes): after the denial it goes on
talking ("Tool result: ... BLOCKED"). Before the fix that tail was spoken at the start of the
caller's next, unrelated turn.
"""

from __future__ import annotations

import asyncio

from structlog.testing import capture_logs

from support import Recorder, ScriptedPlugin, barrier, conversation
from voice_channel.channel.confirmations import PROMPT_LEAD
from voice_channel.channel.pending import NO_ANSWER_IN_TIME
from voice_channel.runtime import ConfirmationRequest, Notice, RuntimeMessage, TextDelta
from voice_channel.serving.keys import STATE

TAIL = "Tool result: rm notes.txt BLOCKED by the user. I did not delete it."


def agent(tail_said: asyncio.Event, *, stall: bool = False, second_request: bool = False):  # type: ignore[no-untyped-def]
    """Asks before deleting; after the decision, talks like an agent reading a tool result.

    ``tail_said`` is set once the tail was yielded (and taken: the run then ends, or stalls).
    """

    async def behaviour(message: RuntimeMessage, rec: Recorder):  # type: ignore[no-untyped-def]
        if "delete" not in message.text:
            yield TextDelta(f"You said: {message.text}.")
            return
        yield TextDelta("Let me do that. ")
        yield ConfirmationRequest(id="rm-1", action="Delete the file notes.txt")
        yield Notice("tool exec finished", "tool")
        yield TextDelta(TAIL)
        if second_request:
            yield ConfirmationRequest(id="rm-2", action="Delete the file notes.bak")
            yield TextDelta(" Tool result: rm notes.bak BLOCKED.")
        tail_said.set()
        if stall:
            await rec.release.wait()
            yield TextDelta(" never spoken")

    return behaviour


async def test_a_timed_out_runs_tail_is_never_spoken_and_the_next_turn_says_so_once(start_channel):
    tail_said = asyncio.Event()
    plugin = ScriptedPlugin(agent(tail_said, second_request=True))
    rec = plugin.recorder
    channel = await start_channel(plugins=[plugin], runtime="scripted", confirmations={"timeout_s": 0.05})
    with capture_logs() as logs:
        async with conversation(channel) as client:
            await client.say("delete notes")
            prompt = await client.reply()
            assert prompt.text.startswith(f"Let me do that. {PROMPT_LEAD}")
            client.heard(prompt.text)
            await tail_said.wait()  # the channel's timer denied; the run said its tail, unheard
            frames = await barrier(client)
            await client.say("what time is it")
            reply = await client.reply()
            client.heard(reply.text)
            again = await client.reply(await client.say("and the weather"))
            (conv,) = channel.app[STATE].conversations
            record = conv.record.as_messages()
    assert not [f for f in frames if f.get("type") == "agent_response"], "nothing is sent while no turn is open"
    assert reply.text == f"{NO_ANSWER_IN_TIME} You said: what time is it."
    assert again.text == "You said: and the weather.", "the sentence is said once"
    assert "BLOCKED" not in str(record) and "BLOCKED" not in reply.text + again.text + str(reply.foreign)
    assert [(rid, d.approved, d.reason) for rid, d in rec.resolved] == [
        ("rm-1", False, "timeout"),
        ("rm-2", False, "superseded"),
    ]
    (unspoken,) = [e for e in logs if e["event"] == "denied_run_unspoken"]
    assert unspoken["dropped_chars"] == len(TAIL) + len(" Tool result: rm notes.bak BLOCKED.")


async def test_the_next_turn_stops_a_denied_run_still_going(start_channel):
    tail_said = asyncio.Event()
    plugin = ScriptedPlugin(agent(tail_said, stall=True))
    rec = plugin.recorder
    channel = await start_channel(plugins=[plugin], runtime="scripted", confirmations={"timeout_s": 0.05})
    async with conversation(channel) as client:
        first = await client.say("delete notes")
        client.heard((await client.reply()).text)
        await tail_said.wait()  # the channel's own timer denied; the run stalls after its tail
        await client.say("hello")
        reply = await client.reply()
    assert reply.text == f"{NO_ANSWER_IN_TIME} You said: hello."
    assert first in rec.cancelled, "the denied run was stopped when the next turn began"
    assert [(rid, d.reason) for rid, d in rec.resolved] == [("rm-1", "timeout")]


async def test_a_late_yes_approves_nothing_and_is_an_ordinary_utterance(start_channel):
    tail_said = asyncio.Event()
    plugin = ScriptedPlugin(agent(tail_said))
    rec = plugin.recorder
    channel = await start_channel(plugins=[plugin], runtime="scripted", confirmations={"timeout_s": 0.05})
    async with conversation(channel) as client:
        client.heard((await client.reply(await client.say("delete notes"))).text)
        await tail_said.wait()
        reply = await client.reply(await client.say("yes"))
    assert reply.text == f"{NO_ANSWER_IN_TIME} You said: yes."
    assert [(d.approved, d.reason) for _, d in rec.resolved] == [(False, "timeout")]


async def test_a_no_in_time_still_lets_the_runtime_answer_in_that_turn(start_channel):
    """A denial the caller gave is answered at that time, by the runtime: only later speech is ruled out."""
    plugin = ScriptedPlugin(agent(asyncio.Event()))
    channel = await start_channel(plugins=[plugin], runtime="scripted")
    async with conversation(channel) as client:
        client.heard((await client.reply(await client.say("delete notes"))).text)
        reply = await client.reply(await client.say("no"))
        client.heard(reply.text)
        after = await client.reply(await client.say("hello"))
    assert reply.text == TAIL
    assert after.text == "You said: hello."
    assert [(d.approved, d.reason) for _, d in plugin.recorder.resolved] == [(False, "user")]


async def test_a_turn_interrupted_before_the_sentence_leaves_it_to_the_next(start_channel):
    tail_said, cleaning, gate = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def behaviour(message: RuntimeMessage, rec: Recorder):  # type: ignore[no-untyped-def]
        if "delete" not in message.text:
            yield TextDelta(f"You said: {message.text}.")
            return
        yield ConfirmationRequest(id="rm-1", action="Delete the file notes.txt")
        yield TextDelta(TAIL)
        tail_said.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cleaning.set()  # a runtime slow to stop (an abort round trip)
            await gate.wait()
            raise

    plugin = ScriptedPlugin(behaviour)
    channel = await start_channel(plugins=[plugin], runtime="scripted", confirmations={"timeout_s": 0.05})
    async with conversation(channel) as client:
        client.heard((await client.reply(await client.say("delete notes"))).text)
        await tail_said.wait()
        first = await client.say("one")  # this turn stops the denied run, which takes its time
        await cleaning.wait()
        await client.say("two")  # ...and is interrupted before it said anything
        reply = await client.reply()
        gate.set()
    assert reply.text == f"{NO_ANSWER_IN_TIME} You said: two."
    assert not [f for f in reply.foreign if f.get("event_id") == first and f.get("content")]
