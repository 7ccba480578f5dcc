"""ReplyStream: Hermes's cumulative drafts and authoritative sends → speakable deltas (no gateway needed)."""

from __future__ import annotations

import pytest

from voice_channel.runtime import ConfirmationRequest, Notice, TextDelta
from voice_channel_hermes.stream import HermesRunFailed, ReplyStream

pytestmark = pytest.mark.asyncio(loop_scope="session")

CURSOR = " ▉"


async def collect(stream: ReplyStream) -> list[object]:
    return [event async for event in stream.events()]


def texts(events: list[object]) -> list[str]:
    return [e.text for e in events if isinstance(e, TextDelta)]


async def test_cumulative_drafts_become_deltas_and_the_final_send_adds_only_the_rest():
    stream = ReplyStream("m1", cursor=CURSOR)
    stream.draft(7, "Hello" + CURSOR)
    stream.draft(7, "Hello there" + CURSOR)
    stream.draft(7, "Hello there" + CURSOR)  # a repeated frame adds nothing
    stream.final("Hello there, friend.")
    stream.complete("success")
    assert texts(await collect(stream)) == ["Hello", " there", ", friend."]


async def test_a_reply_without_drafts_is_the_final_send():
    stream = ReplyStream("m1", cursor=CURSOR)
    stream.final("All at once.")
    stream.complete("success")
    assert texts(await collect(stream)) == ["All at once."]


async def test_a_new_draft_id_is_a_new_segment_separated_by_a_space():
    stream = ReplyStream("m1", cursor=CURSOR)
    stream.draft(3, "Let me check." + CURSOR)
    stream.final("Let me check.")
    stream.draft(5, "It is sunny." + CURSOR)
    stream.final("It is sunny.")
    stream.complete("success")
    assert "".join(texts(await collect(stream))) == "Let me check. It is sunny."


async def test_drafts_of_an_earlier_run_are_refused():
    stream = ReplyStream("m2", cursor=CURSOR, draft_floor=9)
    assert not stream.draft(9, "stale words")
    assert stream.draft(10, "fresh")
    stream.complete("success")
    assert texts(await collect(stream)) == ["fresh"]


async def test_a_rewritten_segment_never_repeats_what_was_spoken():
    stream = ReplyStream("m1")
    stream.draft(1, "One two three")
    stream.draft(1, "One two")  # a prefix of what was said: nothing new
    stream.draft(1, "Uno dos")  # a rewrite: logged, not spoken
    stream.final("One two three four")
    stream.complete("success")
    assert "".join(texts(await collect(stream))) == "One two three four"


async def test_edit_transport_preview_then_edits():
    stream = ReplyStream("m1", cursor=CURSOR)
    stream.preview("out-1", "Hi" + CURSOR)
    assert stream.edit("out-1", "Hi there" + CURSOR, finalize=False)
    assert not stream.edit("out-9", "someone else's message", finalize=False)
    assert stream.edit("out-1", "Hi there.", finalize=True)
    stream.complete("success")
    assert texts(await collect(stream)) == ["Hi", " there", "."]


async def test_notices_and_confirmations_pass_through_in_order():
    stream = ReplyStream("m1")
    stream.draft(1, "Working")
    stream.notice("💻 terminal: rm -rf", "gateway")
    request = ConfirmationRequest(id="r1", action="Run the command rm")
    stream.confirm(request)
    stream.complete("success")
    events = await collect(stream)
    assert events == [TextDelta("Working"), Notice("💻 terminal: rm -rf", "gateway"), request]


async def test_nothing_is_routed_after_close_or_completion():
    stream = ReplyStream("m1")
    stream.complete("success")
    assert not stream.draft(1, "late")
    stream.final("late")
    assert await collect(stream) == []
    closed = ReplyStream("m2")
    closed.close()
    assert not closed.draft(1, "late")


async def test_a_failure_with_nothing_said_raises_for_the_apology():
    stream = ReplyStream("m1")
    stream.complete("failure")
    with pytest.raises(HermesRunFailed):
        await collect(stream)
    spoken = ReplyStream("m2")
    spoken.final("Partial answer")
    spoken.complete("failure")
    assert texts(await collect(spoken)) == ["Partial answer"]
