"""Outbox: currency, order and backpressure, against an in-memory socket."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import structlog

from support import FakeSocket
from voice_channel.channel.outbox import Frame, Outbox, OutboxLimits


@dataclass(eq=False)
class T:
    event_id: int | None
    is_current: bool = True


def make(sock: FakeSocket) -> Outbox:
    return Outbox(sock, structlog.get_logger())


async def test_idle_send_writes_at_once_in_the_callers_task():
    sock = FakeSocket()
    outbox = make(sock)
    await outbox.send(Frame(T(1), "hello"))
    assert sock.sent == [{"type": "agent_response", "content": "hello", "event_id": 1, "is_final": False}]


async def test_posted_frames_keep_their_order_before_later_sends():
    sock = FakeSocket()
    outbox = make(sock)
    turn = T(3)
    outbox.post(Frame(None, pong=True))
    outbox.post(Frame(turn, "a"))
    await outbox.send(Frame(turn, "", is_final=True))
    assert sock.sent == [
        {"type": "pong"},
        {"type": "agent_response", "content": "a", "event_id": 3, "is_final": False},
        {"type": "agent_response", "content": "", "event_id": 3, "is_final": True},
    ]


async def test_frames_of_a_superseded_turn_are_never_written():
    sock = FakeSocket()
    outbox = make(sock)
    old = T(1)
    outbox.post(Frame(old, "stale"))
    old.is_current = False
    await outbox.send(Frame(T(2), "fresh"))
    assert [f["content"] for f in sock.sent] == ["fresh"]
    assert outbox.frames_dropped == 1


async def test_backpressure_merges_queued_text_and_drops_it_once_superseded():
    sock = FakeSocket()
    outbox = make(sock)
    old = T(1)
    sock.pause()
    writer = asyncio.create_task(outbox.send(Frame(old, "one ")))
    await sock.written.wait()  # the first frame is written; the peer is now slow
    for word in ("two ", "three ", "four "):
        await outbox.send(Frame(old, word))  # queued behind the frame in flight
    outbox.post(Frame(None, pong=True))
    old.is_current = False  # a newer transcript was read
    new = T(2)
    outbox.post(Frame(new, "new "))
    outbox.post(Frame(new, "reply"))
    sock.resume.set()
    await writer
    assert sock.sent == [
        {"type": "agent_response", "content": "one ", "event_id": 1, "is_final": False},
        {"type": "pong"},
        {"type": "agent_response", "content": "new reply", "event_id": 2, "is_final": False},
    ]
    assert outbox.frames_dropped == 3


async def test_queued_text_of_a_current_turn_is_merged_into_one_frame():
    sock = FakeSocket()
    outbox = make(sock)
    turn = T(1)
    sock.pause()
    writer = asyncio.create_task(outbox.send(Frame(turn, "a")))
    await sock.written.wait()
    for part in ("b", "c", "d"):
        await outbox.send(Frame(turn, part))
    await outbox.send(Frame(turn, "", is_final=True))
    sock.resume.set()
    await writer
    assert [(f["content"], f["is_final"]) for f in sock.sent] == [("a", False), ("bcd", False), ("", True)]


async def test_a_writer_cancelled_mid_write_hands_the_queue_to_the_pump():
    sock = FakeSocket()
    outbox = make(sock)
    sock.pause()
    writer = asyncio.create_task(outbox.send(Frame(T(1), "x")))
    await sock.written.wait()
    outbox.post(Frame(None, pong=True))
    writer.cancel()  # e.g. its turn was superseded while the peer was slow
    await asyncio.gather(writer, return_exceptions=True)
    sock.resume.set()
    await asyncio.wait_for(sock.wait_until(lambda sent: len(sent) == 2), 5)
    assert sock.sent[-1] == {"type": "pong"}
    await outbox.aclose()


async def test_aclose_drops_the_queue_and_stops_writing():
    sock = FakeSocket()
    outbox = make(sock)
    sock.pause()
    writer = asyncio.create_task(outbox.send(Frame(T(1), "x")))
    await sock.written.wait()
    outbox.post(Frame(None, pong=True))
    await outbox.aclose()
    sock.resume.set()
    await writer
    await outbox.send(Frame(T(1), "after close"))
    assert [f.get("content") for f in sock.sent] == ["x"]


async def test_a_failed_write_closes_the_outbox():
    sock = FakeSocket()
    sock.fail_with = ConnectionResetError("peer gone")
    outbox = make(sock)
    await outbox.send(Frame(T(1), "x"))
    assert outbox.closed
    sock.fail_with = None
    await outbox.send(Frame(T(1), "y"))
    assert sock.sent == []


# --- bounds, pong coalescing, write timeout (a peer that sends but never reads) -------------------


class Stuck:
    """Records what the outbox gave up on; an event, so tests wait for it instead of sleeping."""

    def __init__(self) -> None:
        self.reasons: list[str] = []
        self.event = asyncio.Event()

    def __call__(self, reason: str) -> None:
        self.reasons.append(reason)
        self.event.set()


def bounded(sock: FakeSocket, stuck: Stuck, **limits: float) -> Outbox:
    return Outbox(sock, structlog.get_logger(), OutboxLimits(**limits), on_stuck=stuck)


async def blocked_writer(sock: FakeSocket, outbox: Outbox) -> asyncio.Task[None]:
    """Start a write that the peer does not take (as aiohttp's send waits on a full transport)."""
    sock.pause()
    writer = asyncio.create_task(outbox.send(Frame(T(1), "first ")))
    await sock.written.wait()
    return writer


async def test_a_ping_flood_queues_one_pong_while_the_peer_does_not_read():
    sock, stuck = FakeSocket(), Stuck()
    outbox = bounded(sock, stuck, write_timeout_s=60)
    writer = await blocked_writer(sock, outbox)
    for _ in range(100_000):
        outbox.post(Frame(None, pong=True))
        outbox.post(Frame(None, ws_pong=b"hb"))
    assert outbox.queued_frames == 2, "one JSON pong and one WebSocket pong, whatever the number of pings"
    assert outbox.pongs_coalesced == 2 * 100_000 - 2
    assert stuck.reasons == []
    sock.resume.set()  # the peer reads again: it gets one answer of each kind
    await writer
    await asyncio.wait_for(sock.wait_until(lambda sent: len(sent) == 3), 5)
    assert sock.sent[1:] == [{"type": "pong"}, {"ws_pong": "hb"}]
    await outbox.aclose()


async def test_a_websocket_pong_answers_the_newest_ping():
    sock, stuck = FakeSocket(), Stuck()
    outbox = bounded(sock, stuck)
    writer = await blocked_writer(sock, outbox)
    for payload in (b"1", b"2", b"3"):
        outbox.post(Frame(None, ws_pong=payload))
    sock.resume.set()
    await writer
    await asyncio.wait_for(sock.wait_until(lambda sent: len(sent) == 2), 5)
    assert sock.sent[1] == {"ws_pong": "3"}
    await outbox.aclose()


async def test_a_write_the_peer_does_not_take_in_time_gives_up_on_the_peer():
    sock, stuck = FakeSocket(), Stuck()
    outbox = bounded(sock, stuck, write_timeout_s=0.05)
    writer = await blocked_writer(sock, outbox)
    outbox.post(Frame(None, pong=True))
    await asyncio.wait_for(stuck.event.wait(), 5)
    assert stuck.reasons == ["write_timeout"]
    assert outbox.closed and outbox.stuck_reason == "write_timeout"
    assert outbox.queued_frames == 0 and outbox.queued_bytes == 0, "what waited is released"
    outbox.post(Frame(None, pong=True))
    assert outbox.queued_frames == 0, "nothing is queued for a peer given up on"
    sock.resume.set()
    await writer


async def test_posting_past_the_frame_bound_gives_up_on_the_peer():
    sock, stuck = FakeSocket(), Stuck()
    outbox = bounded(sock, stuck, max_frames=8, write_timeout_s=60)
    writer = await blocked_writer(sock, outbox)
    turn = T(1)
    for _ in range(4):  # e.g. ElevenLabs' re-sends of a finished turn, each replayed in full
        outbox.post(Frame(turn, "the reply "))
        outbox.post(Frame(turn, "", is_final=True))
    assert stuck.reasons == [] and outbox.queued_frames == 8
    outbox.post(Frame(turn, "one too many"))
    assert stuck.reasons == ["outbox_full"]
    assert outbox.closed and outbox.queued_frames == 0
    sock.resume.set()
    await writer


async def test_posting_past_the_byte_bound_gives_up_on_the_peer():
    sock, stuck = FakeSocket(), Stuck()
    outbox = bounded(sock, stuck, max_bytes=16_384, write_timeout_s=60)
    writer = await blocked_writer(sock, outbox)
    outbox.post(Frame(T(1), "é" * 4000))  # 8,000 bytes in UTF-8: counted as bytes, not characters
    assert stuck.reasons == []
    outbox.post(Frame(T(1), "é" * 4200))
    assert stuck.reasons == ["outbox_full"]
    sock.resume.set()
    await writer


async def test_frames_of_superseded_turns_do_not_count_against_the_bounds():
    sock, stuck = FakeSocket(), Stuck()
    outbox = bounded(sock, stuck, max_frames=8, write_timeout_s=60)
    writer = await blocked_writer(sock, outbox)
    for event_id in range(2, 50):  # a transcript flood: each turn supersedes the one before
        turn = T(event_id)
        outbox.post(Frame(turn, "x"))
        outbox.post(Frame(turn, "", is_final=True))
        turn.is_current = False
    assert stuck.reasons == [] and outbox.queued_frames <= 8
    sock.resume.set()
    await writer
    await outbox.aclose()


class SlowPeer(FakeSocket):
    """A peer that takes each frame only when the test lets it read one (a permit per frame)."""

    def __init__(self) -> None:
        super().__init__()
        self.permits = asyncio.Semaphore(0)

    async def _record(self, frame: dict) -> None:  # type: ignore[type-arg]
        self.sent.append(frame)
        self.written.set()
        self._changed.set()
        await self.permits.acquire()


async def test_a_slow_but_reading_peer_gets_everything_and_the_runtime_waits_for_it():
    sock, stuck = SlowPeer(), Stuck()
    outbox = bounded(sock, stuck, max_frames=8, max_bytes=16_384, write_timeout_s=5)
    turn = T(1)
    words = [f"w{i} " for i in range(200)]
    peak = 0

    async def runtime() -> None:
        nonlocal peak
        for word in words:
            await outbox.send(Frame(turn, word))
            peak = max(peak, outbox.queued_frames)
        await outbox.send(Frame(turn, "", is_final=True))

    speaking = asyncio.create_task(runtime())
    taken = 0
    while not (sock.sent and sock.sent[-1].get("is_final")):  # the peer reads one frame at a time
        await asyncio.wait_for(sock.wait_until(lambda sent, seen=taken: len(sent) > seen), 5)
        taken = len(sock.sent)
        sock.permits.release()
    sock.permits.release()
    await speaking
    assert stuck.reasons == []
    assert "".join(f["content"] for f in sock.sent) == "".join(words)
    assert peak <= 4, "senders wait at half the frame bound"
    await outbox.aclose()
