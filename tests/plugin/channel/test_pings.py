"""The ping wheel: every socket pinged once per heartbeat, on one timer that runs only while sockets are on it."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from structlog.testing import capture_logs

from voice_channel.channel.pings import TICK_S, PingWheel


class Socket:
    """Counts its pings; ``until`` is set once it has had that many."""

    def __init__(self, until: int = 1, on_ping=None) -> None:  # type: ignore[no-untyped-def]
        self.pings = 0
        self.until = until
        self.done = asyncio.Event()
        self.on_ping = on_ping

    def ping_due(self) -> None:
        self.pings += 1
        if self.on_ping is not None:
            self.on_ping(self)
        if self.pings >= self.until:
            self.done.set()


@pytest.mark.parametrize(("heartbeat_s", "buckets"), [(20.0, 80), (1.5, 6), (0.05, 1), (0.3, 2)])
def test_the_wheel_turns_at_most_every_tick_and_exactly_once_per_heartbeat(heartbeat_s: float, buckets: int) -> None:
    wheel = PingWheel(heartbeat_s)
    assert len(wheel._buckets) == buckets
    assert wheel._tick_s <= TICK_S and wheel._tick_s * buckets == pytest.approx(heartbeat_s)


async def test_a_socket_is_pinged_every_heartbeat_and_the_timer_stops_with_the_last_socket() -> None:
    loop = asyncio.get_running_loop()
    wheel = PingWheel(0.3)  # two buckets of 0.15 s
    socket = Socket(until=3)
    started = loop.time()
    bucket = wheel.add(socket)
    assert len(wheel) == 1 and wheel._timer is not None
    await asyncio.wait_for(socket.done.wait(), 5)
    elapsed = loop.time() - started
    # Three pings: the first within a heartbeat (less at most one tick), then one per heartbeat.
    assert socket.pings == 3 and elapsed >= 0.3 * 3 - 0.15 - 0.01
    wheel.remove(socket, bucket)
    assert len(wheel) == 0 and wheel._timer is None
    wheel.remove(socket, bucket)  # twice: nothing
    assert len(wheel) == 0


async def test_sockets_joining_at_different_times_are_spread_over_the_buckets() -> None:
    wheel = PingWheel(0.5)  # two buckets
    first = Socket()
    buckets = [wheel.add(first)]
    await asyncio.wait_for(first.done.wait(), 5)  # the wheel turned a whole round since
    later = [Socket() for _ in range(3)]
    for socket in later:
        buckets.append(wheel.add(socket))
    # Joined together: the same bucket, pinged together in one visit a heartbeat from now.
    assert len(set(buckets[1:])) == 1
    await asyncio.wait_for(asyncio.gather(*(s.done.wait() for s in later)), 5)
    for socket, bucket in zip([first, *later], buckets, strict=True):
        wheel.remove(socket, bucket)
    assert wheel._timer is None


async def test_a_socket_leaving_during_its_visit_and_a_failing_one_do_not_cost_the_others_their_ping() -> None:
    wheel = PingWheel(0.05)
    buckets: dict[Socket, int] = {}

    def leave(socket: Socket) -> None:  # a ping that closes its socket takes it off the wheel
        wheel.remove(socket, buckets[socket])

    def fail(socket: Socket) -> None:
        raise RuntimeError("boom")

    leaving, failing, steady = Socket(on_ping=leave), Socket(on_ping=fail, until=2), Socket(until=2)
    with capture_logs() as logs:
        for socket in (leaving, failing, steady):
            buckets[socket] = wheel.add(socket)
        await asyncio.wait_for(steady.done.wait(), 5)
    assert leaving.pings == 1 and steady.pings >= 2 and failing.pings >= 2
    assert Counter(e["event"] for e in logs)["ping_failed"] >= 2
    for socket in (failing, steady):
        wheel.remove(socket, buckets[socket])
    assert len(wheel) == 0 and wheel._timer is None
