"""Outbox: currency, order and backpressure, against an in-memory socket."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import structlog

from support import FakeSocket
from voice_channel.outbox import Frame, Outbox


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
