"""The turn engine in the unit tier: a Conversation driven directly, over an in-memory socket."""

from __future__ import annotations

import asyncio

import structlog

from support import FakeSocket, ScriptedPlugin
from voice_channel import ConversationInfo
from voice_channel.channel.conversation import Conversation
from voice_channel.channel.outbox import Outbox
from voice_channel.channel.protocol import UserTranscriptMessage
from voice_channel.plugins import PluginHooks, get_plugin_manager
from voice_channel.settings import Settings


def transcript(event_id: int, text: str) -> UserTranscriptMessage:
    return UserTranscriptMessage(
        type="user_transcript", event_id=event_id, user_transcript=[{"role": "user", "content": text}]
    )


async def make_conversation(plugin: ScriptedPlugin, sock: FakeSocket, **settings) -> Conversation:
    pm = get_plugin_manager(load_entrypoints=False, extra_plugins=[plugin])
    hooks = PluginHooks(pm)
    s = Settings(runtime="scripted", **settings)
    runtime = hooks.runtimes()["scripted"].factory(s)
    conv = Conversation(
        runtime=runtime, runtime_name="scripted", hooks=hooks, settings=s, outbox=Outbox(sock, structlog.get_logger())
    )
    conv.on_init("conv-unit")
    return conv


async def test_nothing_of_the_old_turn_is_written_after_the_new_transcript_is_read():
    async def endless(message, rec):
        i = 0
        while True:
            yield f"{message.text}-{i}. "
            i += 1
            await asyncio.sleep(0)

    plugin = ScriptedPlugin(endless)
    sock = FakeSocket()
    conv = await make_conversation(plugin, sock)
    conv.on_transcript(transcript(1, "old"))
    await sock.wait_until(lambda sent: len(sent) >= 5)
    old_task = conv.current.task
    conv.on_transcript(transcript(2, "new"))
    cut = len(sock.sent)  # everything after this was written after the transcript was read
    await sock.wait_until(lambda sent: any(f["event_id"] == 2 for f in sent[cut:]))
    assert old_task is not None and old_task.done(), "the superseded turn had ended before the new one spoke"
    await conv.close("close")
    assert all(f["event_id"] == 2 for f in sock.sent[cut:])
    assert plugin.recorder.cancelled[0] == 1


async def test_a_slow_peer_holds_the_runtime_back_and_an_interruption_still_wins():
    async def chatty(message, rec):
        for i in range(50):
            yield f"{message.text} {i}, "
            await asyncio.sleep(0)

    plugin = ScriptedPlugin(chatty)
    sock = FakeSocket()
    conv = await make_conversation(plugin, sock)
    sock.pause()  # the peer stops reading after the first frame
    conv.on_transcript(transcript(1, "old"))
    await sock.written.wait()
    # The turn that wrote is waiting for the peer (backpressure reaches the runtime); a stall
    # flush may still queue text behind it. Now the caller speaks again.
    conv.on_transcript(transcript(2, "new"))
    sock.resume.set()
    await sock.wait_until(lambda sent: any(f["event_id"] == 2 and f["is_final"] for f in sent))
    await conv.close("close")
    assert [f["event_id"] for f in sock.sent].count(1) == 1, "only the frame already on the wire"
    assert plugin.recorder.cancelled == [1]


async def test_close_while_a_turn_runs_cancels_it_and_closes_the_session():
    async def forever(message, rec):
        yield "x "
        await rec.release.wait()

    plugin = ScriptedPlugin(forever)
    sock = FakeSocket()
    conv = await make_conversation(plugin, sock)
    conv.on_transcript(transcript(1, "hi"))
    await plugin.recorder.started.wait()
    task = conv.current.task
    await conv.close("disconnect")
    assert plugin.recorder.cancelled == [1]
    assert plugin.recorder.closed == 1
    assert task.done()
    assert conv.current.task is None, "an ended turn lets go of its task"


async def test_runtime_that_ignores_cancellation_does_not_block_the_next_turn():
    async def stubborn(message, rec):
        if message.text == "first":
            yield "busy "
            try:
                await rec.release.wait()
            except asyncio.CancelledError:
                rec.cancel_seen.set()
                await rec.release.wait()  # ignores the cancellation until released
            return
        yield "second answer"

    plugin = ScriptedPlugin(stubborn)
    sock = FakeSocket()
    conv = await make_conversation(plugin, sock, turn={"cancel_grace_s": 0.05})
    conv.on_transcript(transcript(1, "first"))
    await plugin.recorder.started.wait()
    conv.on_transcript(transcript(2, "second"))
    await sock.wait_until(lambda sent: any(f["event_id"] == 2 and f["is_final"] for f in sent))
    assert "".join(f["content"] for f in sock.sent if f["event_id"] == 2) == "second answer"
    plugin.recorder.release.set()
    await conv.close("close")


async def test_hooks_see_the_conversation_as_the_read_only_contract_view():
    async def reply(message, rec):
        yield "hi"

    sock = FakeSocket()
    conv = await make_conversation(ScriptedPlugin(reply), sock)
    try:
        assert isinstance(conv, ConversationInfo)
        members = {name for name in vars(ConversationInfo) if not name.startswith("_")}
        assert members == {
            "conversation_id",
            "runtime_name",
            "handshake_headers",
            "language",
            "record",
            "started_at",
            "ended_reason",
            "awaiting_confirmation",
        }
        assert conv.conversation_id == "conv-unit" and conv.awaiting_confirmation is None
    finally:
        await conv.close("close")
