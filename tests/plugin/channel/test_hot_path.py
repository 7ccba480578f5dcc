"""What keeps an idle conversation small and the latency path short (issue 14), without losing behaviour."""

from __future__ import annotations

import asyncio
import io
import logging
import random
import re

import pytest
import structlog
from structlog.testing import capture_logs

from support import FakeSocket, ScriptedPlugin, words
from voice_channel import hookimpl
from voice_channel.channel import conversation as conversation_module
from voice_channel.channel.auth import PublicHeaders
from voice_channel.channel.conversation import Conversation
from voice_channel.channel.outbox import Frame, Outbox, OutboxLimits
from voice_channel.channel.peer import PeerGuard
from voice_channel.channel.pending import PendingRuns
from voice_channel.channel.progress import PhraseSource
from voice_channel.channel.protocol import UserTranscriptMessage, is_history_item
from voice_channel.channel.record import ConversationRecord
from voice_channel.channel.speech import PhraseChunker
from voice_channel.channel.turn import Turn
from voice_channel.channel.untrusted import read_transcript, sanitize
from voice_channel.elevenlabs.ratelimit import TokenBucket
from voice_channel.logging import log_after_queued_work
from voice_channel.plugins import PluginHooks, get_plugin_manager
from voice_channel.serving.metrics import Metrics
from voice_channel.settings import Settings


def transcript(event_id: int, text: str) -> UserTranscriptMessage:
    return UserTranscriptMessage(
        type="user_transcript", event_id=event_id, user_transcript=[{"role": "user", "content": text}]
    )


async def make_conversation(plugin: ScriptedPlugin, sock: FakeSocket, outbox: Outbox | None = None) -> Conversation:
    pm = get_plugin_manager(load_entrypoints=False, extra_plugins=[plugin])
    hooks = PluginHooks(pm)
    settings = Settings(runtime="scripted")
    conv = Conversation(
        runtime=hooks.runtimes()["scripted"].factory(settings),
        runtime_name="scripted",
        hooks=hooks,
        settings=settings,
        outbox=outbox or Outbox(sock, structlog.get_logger()),
    )
    conv.on_init("conv-hot")
    return conv


async def loop_passes(count: int) -> None:
    """Wait until ``count`` passes of the event loop have run (callbacks scheduled one from another)."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    callback = done.set_result
    args: tuple[object, ...] = (None,)
    for _ in range(count):
        args = (callback, *args)
        callback = loop.call_soon  # type: ignore[assignment]
    callback(*args)
    await done


def final_of(event_id: int):  # type: ignore[no-untyped-def]
    return lambda sent: any(f.get("event_id") == event_id and f.get("is_final") for f in sent)


@pytest.mark.parametrize(
    "cls",
    [Conversation, Turn, Outbox, PeerGuard, PendingRuns, ConversationRecord, TokenBucket, PhraseSource, PublicHeaders],
)
def test_per_conversation_objects_have_slots(cls: type) -> None:
    assert "__slots__" in vars(cls)
    assert "__dict__" not in dir(cls), f"{cls.__name__} instances would carry a __dict__"


async def test_a_finished_turn_releases_its_task_and_the_session_task() -> None:
    plugin = ScriptedPlugin(lambda message, rec: words("hello ", "there."))
    sock = FakeSocket()
    conv = await make_conversation(plugin, sock)
    conv.on_transcript(transcript(1, "hi"))
    task = conv.current.task
    assert task is not None
    await sock.wait_until(final_of(1))
    await task
    assert conv.current.task is None, "a finished turn keeps no task"
    assert conv._session_task is None and conv._session_value is not None, "the session, not its task"
    assert conv._tasks is None, "no empty task set kept"
    turn = conv.current
    assert turn._chunker is None and turn._shaper is None and turn._log is None, "only a running turn needs them"
    assert turn.spoken == ["hello there."] and turn.text is conv.record.entries[-1].text, "one string, shared"
    sent = len(sock.sent)
    conv.on_transcript(transcript(1, "hi"))  # ElevenLabs re-sends the finished turn: replayed from what is kept
    await sock.wait_until(lambda frames: len(frames) == sent + 2)
    assert [f["content"] for f in sock.sent[sent:]] == ["hello there.", ""] and sock.sent[-1]["is_final"]
    await conv.close("close")
    assert plugin.recorder.closed == 1, "the kept session is still closed"


async def test_an_idle_outbox_holds_no_queue_event_or_timer() -> None:
    sock = FakeSocket()
    outbox = Outbox(sock, structlog.get_logger(), OutboxLimits(write_timeout_s=10.0))
    assert (outbox._queue, outbox._room, outbox._watchdog) == (None, None, None)
    await outbox.send(Frame(None, pong=True))
    assert outbox._watchdog is not None, "a write arms the watchdog"
    outbox._watch()  # the watchdog's tick, with nothing in flight and nothing queued
    assert outbox._watchdog is None, "it stops once there is nothing to write"
    assert outbox.queued_frames == 0
    await outbox.aclose()


async def test_the_watchdog_still_gives_up_on_a_write_that_never_returns() -> None:
    sock = FakeSocket()
    stuck: list[str] = []
    given_up = asyncio.Event()

    def on_stuck(reason: str) -> None:
        stuck.append(reason)
        given_up.set()

    outbox = Outbox(sock, structlog.get_logger(), OutboxLimits(write_timeout_s=0.04), on_stuck=on_stuck)
    sock.pause()
    writer = asyncio.create_task(outbox.send(Frame(None, pong=True)))
    await sock.written.wait()
    assert outbox._watchdog is not None, "armed by the write in flight"
    await asyncio.wait_for(given_up.wait(), 5)  # only the watchdog's own timer can set it
    assert stuck == ["write_timeout"]
    writer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await writer


async def test_deferred_lines_are_still_emitted_with_conversation_and_event_ids() -> None:
    async def slow(message, rec):  # type: ignore[no-untyped-def]
        yield f"{message.text} one, "
        await rec.release.wait()
        yield "two."

    plugin = ScriptedPlugin(slow)
    sock = FakeSocket()
    with capture_logs() as logs:
        conv = await make_conversation(plugin, sock)
        conv.on_transcript(transcript(1, "first"))
        await sock.wait_until(lambda sent: len(sent) >= 1)
        conv.on_transcript(transcript(2, "second"))
        plugin.recorder.release.set()
        await sock.wait_until(final_of(2))
        await loop_passes(3)
        await conv.close("close")
    by_event = {line["event"]: line for line in logs}
    assert by_event["conversation_started"]["conversation_id"] == "conv-hot"
    interrupted = by_event["turn_interrupted"]
    assert (interrupted["conversation_id"], interrupted["event_id"], interrupted["by_event_id"]) == ("conv-hot", 1, 2)
    finished = by_event["turn_finished"]
    assert (finished["conversation_id"], finished["event_id"]) == ("conv-hot", 2)
    assert finished["log_level"] == "info"
    assert all(f["event_id"] == 2 for f in sock.sent[1:]), "nothing of the superseded turn after the first chunk"


async def test_log_after_queued_work_runs_after_the_work_queued_now() -> None:
    loop = asyncio.get_running_loop()
    order: list[str] = []
    with capture_logs() as logs:
        structlog.contextvars.bind_contextvars(event_id=7)
        try:
            log_after_queued_work(structlog.get_logger().bind(conversation_id="c"), "info", "late", n=1)
            loop.call_soon(lambda: order.append(f"work, {len(logs)} lines"))
        finally:
            structlog.contextvars.unbind_contextvars("event_id")
        await loop_passes(3)
    assert order == ["work, 0 lines"]
    assert logs == [{"event": "late", "n": 1, "conversation_id": "c", "log_level": "info"}]


def test_log_after_queued_work_without_a_loop_logs_at_once_and_skips_filtered_levels() -> None:
    with capture_logs() as logs:
        log_after_queued_work(structlog.get_logger(), "info", "now")
    assert [line["event"] for line in logs] == ["now"]
    out = io.StringIO()
    quiet = structlog.make_filtering_bound_logger(logging.WARNING)(
        structlog.PrintLogger(out), [structlog.processors.KeyValueRenderer()], {}
    )
    log_after_queued_work(quiet, "info", "filtered")
    log_after_queued_work(quiet, "warning", "kept")
    assert "filtered" not in out.getvalue() and "kept" in out.getvalue()


def test_token_bucket_allows_a_burst_then_refills() -> None:
    now = [100.0]
    bucket = TokenBucket(2, clock=lambda: now[0])
    assert bucket.acquire() is None
    assert bucket.acquire() is None
    wait = bucket.acquire()
    assert wait is not None and wait == pytest.approx(30.0)
    now[0] += 30.0
    assert bucket.acquire() is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (" plain words here ", ("plain words here", 0)),
        ("two  spaces\tand a tab\n", ("two spaces and a tab", 0)),
        ("bell\x07 in it", ("bell in it", 1)),
    ],
)
def test_sanitize_fast_path_matches_the_general_one(text: str, expected: tuple[str, int]) -> None:
    assert sanitize(text) == expected


def _chunks_by_full_rescan(feeds: list[str], max_chars: int) -> list[str | None]:
    """The chunker's rule, searching the whole held buffer on every feed (the reference)."""
    boundary = re.compile(r"[.!?;:,\u2026](?=\s)|\n")
    held, sent_any, out = "", False, []

    def take(buf: str, cut: int) -> str | None:
        nonlocal held, sent_any
        chunk, held = buf[:cut], buf[cut:]
        if not chunk.strip():
            held = chunk + held
            return None
        sent_any = True
        return chunk

    for text in feeds:
        if not text:
            out.append(None)
            continue
        buf = held + text
        if not sent_any:
            out.append(take(buf, len(buf)))
            continue
        cut = max((m.end() for m in boundary.finditer(buf)), default=0)
        if cut == 0 and len(buf) >= max_chars:
            cut = buf.rfind(" ") + 1 or len(buf)
        if cut == 0:
            held = buf
            out.append(None)
        else:
            out.append(take(buf, cut))
    out.append(take(held, len(held)) if held else None)
    return out


def test_the_chunker_scans_only_new_text_and_cuts_where_a_full_rescan_would() -> None:
    pieces = ["a", "b", " ", ",", ".", "!", "\n", "\t", ";", "word", "x. ", " \n", "\n\n", "\u2026", ", "]
    for seed in range(3000):
        rnd = random.Random(seed)
        max_chars = rnd.choice([5, 10, 40, 200])
        feeds = ["".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 6))) for _ in range(rnd.randint(1, 30))]
        chunker = PhraseChunker(max_chars)
        got = [chunker.feed(text) for text in feeds] + [chunker.flush()]
        assert got == _chunks_by_full_rescan(feeds, max_chars), (seed, feeds)


async def test_conversation_started_is_written_after_the_first_turns_first_chunk() -> None:
    # ElevenLabs may send the first transcript right behind init: the line must not come first.
    plugin = ScriptedPlugin(lambda message, rec: words("hello ", "there."))
    sock = FakeSocket()
    started_lines_at_first_frame: list[int] = []
    sock_send = sock.send_str

    with capture_logs() as logs:

        async def send_str(data: str) -> None:
            if not started_lines_at_first_frame:
                started_lines_at_first_frame.append(sum(line["event"] == "conversation_started" for line in logs))
            await sock_send(data)

        sock.send_str = send_str  # type: ignore[method-assign]
        conv = await make_conversation(plugin, sock)  # init
        await loop_passes(2)  # the transcript comes in a later read
        conv.on_transcript(transcript(1, "hi"))
        await sock.wait_until(final_of(1))
        await loop_passes(3)
        await conv.close("close")
    assert started_lines_at_first_frame == [0]
    started = [line for line in logs if line["event"] == "conversation_started"]
    assert len(started) == 1 and started[0]["conversation_id"] == "conv-hot"
    events = [line["event"] for line in logs]
    assert events.index("conversation_started") < events.index("turn_finished") < events.index("conversation_ended")


async def test_conversation_started_is_written_without_a_transcript(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conversation_module, "_START_LINE_WAIT_S", 0)
    plugin = ScriptedPlugin(lambda message, rec: words("hello."))
    with capture_logs() as logs:
        conv = await make_conversation(plugin, FakeSocket())
        assert not [line for line in logs if line["event"] == "conversation_started"], "deferred, not at init"
        await loop_passes(2)
        assert [line["conversation_id"] for line in logs if line["event"] == "conversation_started"] == ["conv-hot"]
        await conv.close("close")
    assert [line["event"] for line in logs].count("conversation_started") == 1


async def test_a_conversation_closed_before_the_wait_still_writes_conversation_started_first() -> None:
    plugin = ScriptedPlugin(lambda message, rec: words("hello."))
    with capture_logs() as logs:
        conv = await make_conversation(plugin, FakeSocket())
        await conv.close("close")
        await loop_passes(3)
    events = [line["event"] for line in logs]
    assert events.count("conversation_started") == 1
    assert events.index("conversation_started") < events.index("conversation_ended")


@pytest.mark.parametrize(
    "items",
    [
        [{"role": "user", "content": "a"}, {"role": "agent", "content": "b"}, {"role": "user", "content": "c"}],
        [{"role": "user", "content": "a"}, "text", None, 3, [], {"role": "user"}, {"role": "user", "content": "d"}],
        [{"role": "system", "content": "x"}, {"role": "agent", "content": 5}, {"role": "user", "content": "e"}],
        [{"role": ["user"], "content": "x"}, {"content": "y"}, {"role": "agent", "content": "z"}],
        [{"role": "agent", "content": "heard"}, {"role": "tool", "content": "t"}, {"role": "user", "content": "f"}],
        [],
    ],
)
def test_read_transcript_counts_and_picks_items_as_is_history_item_does(items: list[object]) -> None:
    usable = [item for item in items if is_history_item(item)]
    got = read_transcript(items, boundary="B", max_chars=100, max_history_items=100)
    assert got.skipped_items == len(items) - len(usable)
    assert ("malformed_items" in got.flags) == (len(usable) < len(items))
    users = [item["content"] for item in usable if item["role"] == "user"]  # type: ignore[index]
    last_role = usable[-1]["role"] if usable else None  # type: ignore[index]
    assert got.text == (users[-1] if users and last_role == "user" else "")


def record_timers(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the callbacks the running loop's ``call_later`` is given from now on."""
    loop = asyncio.get_running_loop()
    timers: list[str] = []
    call_later = loop.call_later

    def recording_call_later(delay, callback, *args, **kwargs):  # type: ignore[no-untyped-def]
        timers.append(getattr(callback, "__name__", repr(callback)))
        return call_later(delay, callback, *args, **kwargs)

    monkeypatch.setattr(loop, "call_later", recording_call_later)
    return timers


async def test_a_runtime_answering_at_once_costs_no_filler_timer_and_a_slow_one_still_gets_the_filler(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    timers = record_timers(monkeypatch)

    async def slow(message, rec):  # type: ignore[no-untyped-def]
        if message.text == "slow":
            await rec.release.wait()
        yield "done."

    plugin = ScriptedPlugin(slow)
    sock = FakeSocket()
    conv = await make_conversation(plugin, sock)
    conv._settings.turn.filler_enabled = True
    conv._settings.turn.first_text_deadline_s = 0.01
    conv.on_transcript(transcript(1, "fast"))
    await sock.wait_until(final_of(1))
    await loop_passes(3)
    assert "_send_filler" not in timers, "the first text went out in the turn's first step: no timer"
    conv.on_transcript(transcript(2, "slow"))
    await sock.wait_until(lambda sent: any(f.get("event_id") == 2 and f.get("content") for f in sent))
    assert "_send_filler" in timers
    assert next(f["content"] for f in sock.sent if f.get("event_id") == 2) == conv._settings.turn.filler_text + " "
    plugin.recorder.release.set()
    await sock.wait_until(final_of(2))
    await conv.close("close")


async def test_a_transcript_hook_that_awaits_costs_no_filler_timer_for_a_runtime_answering_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A plugin's async transcript hook suspends the turn before the runtime's stream: the filler's deadline is
    armed where the stream starts, not at the turn's start (a timer per turn showed in the tail at 2,000
    conversations: bench/scale.py p99 59-65 ms against 10-13 without it)."""
    timers = record_timers(monkeypatch)

    class AwaitingHook:
        @hookimpl
        async def voice_channel_transcript(self, message, conversation):  # type: ignore[no-untyped-def]
            await asyncio.sleep(0)  # a hook that awaits anything: the turn's task yields here
            return None

    plugin = ScriptedPlugin(lambda message, rec: words("done."))
    pm = get_plugin_manager(load_entrypoints=False, extra_plugins=[plugin, AwaitingHook()])
    settings = Settings(runtime="scripted")
    sock = FakeSocket()
    conv = Conversation(
        runtime=PluginHooks(pm).runtimes()["scripted"].factory(settings),
        runtime_name="scripted",
        hooks=PluginHooks(pm),
        settings=settings,
        outbox=Outbox(sock, structlog.get_logger()),
    )
    conv.on_init("conv-hook")
    await conv.runtime_session()
    conv.on_transcript(transcript(1, "fast"))
    await sock.wait_until(final_of(1))
    await loop_passes(3)
    assert "_send_filler" not in timers
    await conv.close("close")


async def test_the_first_chunk_metric_is_observed_once_after_its_write_with_the_time_taken_before_it() -> None:
    sock = FakeSocket()
    observed: list[tuple[float, int]] = []

    class Recording(Metrics):
        def first_chunk(self, runtime: str, seconds: float) -> None:
            observed.append((seconds, len(sock.sent)))

    turn = Turn(
        1,
        outbox=Outbox(sock, structlog.get_logger()),
        settings=Settings().turn,
        log=structlog.get_logger(),
        metrics=Recording(),
    )
    await turn.say("hello there. ")
    await turn.say("more. ")
    ((seconds, frames_written),) = observed
    assert frames_written == 1, "observed after the first frame was written"
    assert turn.first_text_at is not None and seconds == turn.first_text_at - turn.started_at
