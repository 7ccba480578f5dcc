"""Fault injection against a real ``voice-channel serve`` process on 127.0.0.1.

The server runs the test-only ``faulty`` runtime (``tests/fault_runtime.py``: stalls, fails,
floods or is slow on request). Peers are the real client (:class:`SpeechEngineClient`) or a raw
socket that misbehaves on purpose (:class:`RawPeer`). Every wait is on something the server says
(its JSON log, read as it is written) or sends, bounded by a timeout; the only polling is of
``/proc`` (file descriptors), which the server cannot announce.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from channel_process import ServerProcess
from processes import wait_until
from raw_peer import BINARY, PING, PONG, TEXT, RawPeer, encode_frame
from voice_channel.channel.auth import JWT_HEADER
from voice_channel.elevenlabs.client import SpeechEngineClient, sign_speech_engine_jwt

MiB = 1024 * 1024
#: The shared server's limits: small, so that every deadline is reached quickly.
MAX_FRAME = 64 * 1024
FAST = {
    "SERVER__HEARTBEAT_S": "1.5",
    "SERVER__WRITE_TIMEOUT_S": "1",
    "SERVER__INIT_TIMEOUT_S": "1",
    "SERVER__IDLE_TIMEOUT_S": "2",
    "SERVER__MAX_FRAME_BYTES": str(MAX_FRAME),
    "SERVER__MAX_CONVERSATIONS": "60",
    "TURN__FIRST_TEXT_DEADLINE_S": "0.3",
    "INPUT__MAX_TURNS_PER_MINUTE": "600",
}


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with ServerProcess(FAST) as process:
        yield process
        assert process.entries("unparsed") == [], "every log line is JSON"


@pytest.fixture
def raw() -> Iterator[list[RawPeer]]:
    """Raw peers a test opened (append them): closed at teardown, whatever happened."""
    opened: list[RawPeer] = []
    yield opened
    for peer in opened:
        peer.close()


async def connect(raw: list[RawPeer], server: ServerProcess, **kwargs: Any) -> RawPeer:
    peer = await RawPeer.connect(server.port, server.api_key, **kwargs)
    raw.append(peer)
    return peer


def client(server: ServerProcess, **kwargs: Any) -> SpeechEngineClient:
    return SpeechEngineClient(server.url, api_key=server.api_key, **kwargs)


async def seen(server: ServerProcess, event: str, start: int = 0, timeout: float = 20, **fields: Any) -> dict:
    """Wait (off the event loop) until the server logs ``event`` with ``fields``, from ``start`` on."""

    def match(entry: dict) -> bool:
        return entry["event"] == event and all(entry.get(k) == v for k, v in fields.items())

    return await asyncio.to_thread(server.wait_log, match, timeout, start)


async def ended(server: ServerProcess, conversation_id: str, timeout: float = 20) -> dict:
    return await seen(server, "conversation_ended", timeout=timeout, conversation_id=conversation_id)


async def still_answers(server: ServerProcess) -> None:
    async with client(server) as probe:
        await probe.say("are you still there")
        assert (await probe.reply()).text == "You said: are you still there"


def transcript(event_id: int, text: str) -> dict[str, Any]:
    return {"type": "user_transcript", "event_id": event_id, "user_transcript": [{"role": "user", "content": text}]}


def fds_back_to(server: ServerProcess, baseline: int, timeout: float = 15) -> None:
    wait_until(lambda: server.fds() <= baseline, timeout=timeout, what=f"server fds back to {baseline}")


# --- peers that leave in the middle of a reply --------------------------------------------------------


@pytest.mark.parametrize("leave", ["rst", "fin"])
async def test_a_peer_that_drops_mid_stream_ends_the_conversation_and_the_run(server, leave, raw):
    mark = server.mark()
    peer = await connect(raw, server)
    await peer.send_json(transcript(1, "slow"))
    opcode, payload = await peer.read_frame()
    assert opcode == TEXT and json.loads(payload)["event_id"] == 1, "the reply is streaming"
    started = await seen(server, "conversation_started", mark)
    peer.reset() if leave == "rst" else peer.close()
    end = await ended(server, started["conversation_id"])
    assert end["reason"] in ("disconnect", "error")
    await seen(server, "faulty_cancelled", mark, conversation_id=started["conversation_id"])
    await seen(server, "faulty_session_closed", mark, conversation_id=started["conversation_id"])
    await still_answers(server)


# --- event ids ----------------------------------------------------------------------------------------


async def test_supersede_during_a_slow_reply_sends_nothing_more_of_the_old_turn(server):
    async with client(server) as peer:
        await peer.say("slow")
        first = await peer.receive()
        assert first["event_id"] == 1 and not first["is_final"]
        await peer.say("now something else")
        frames = []
        while not (frames and frames[-1].get("event_id") == 2 and frames[-1]["is_final"]):
            frames.append(await peer.receive())
    new_start = next(i for i, f in enumerate(frames) if f["event_id"] == 2)
    assert all(f["event_id"] == 2 for f in frames[new_start:]), "an old chunk after the new reply began"
    assert not any(f["event_id"] == 1 and f["is_final"] for f in frames), "the superseded turn got a final"
    assert "".join(f["content"] for f in frames[new_start:]) == "You said: now something else"


async def test_duplicate_and_out_of_order_event_ids(server):
    async with client(server) as peer:
        await peer.say("five", event_id=5)
        assert (await peer.reply(5)).text == "You said: five"
        await peer.send_transcript(5)  # a re-send after the turn finished: replayed in full
        assert (await peer.reply(5)).chunks == ["You said: five"]
        await peer.send_transcript(3)  # older: stale, nothing at all
        await peer.ping()
        assert await peer.receive() == {"type": "pong"}
        await peer.say("slow", event_id=6)
        await peer.receive()
        await peer.send_transcript(6)  # a re-send while the turn runs: it just goes on
        reply = await peer.reply(6)
        assert reply.text.startswith("word") and reply.text.rstrip().endswith("word199")
        await peer.say("seven", event_id=7)
        assert (await peer.reply(7)).text == "You said: seven"


# --- bad input ----------------------------------------------------------------------------------------

DEEP = 10_000
MALFORMED_TEXT: list[str] = [
    "",
    " ",
    "not json",
    "{",
    "}",
    '{"type": "ping"',
    "{'type': 'ping'}",
    "null",
    "true",
    "42",
    '"ping"',
    "[]",
    '[{"type": "ping"}]',
    "{}",
    '{"type": null}',
    '{"type": 5}',
    '{"type": ["ping"]}',
    '{"type": "init"}',
    '{"type": "init", "conversation_id": 7}',
    '{"type": "init", "conversation_id": ""}',
    '{"type": "user_transcript", "event_id": "1", "user_transcript": []}',
    '{"type": "user_transcript", "event_id": 1.5, "user_transcript": []}',
    '{"type": "user_transcript", "event_id": true, "user_transcript": []}',
    '{"type": "user_transcript", "event_id": 1, "user_transcript": "hello"}',
    '{"type": "user_transcript", "event_id": 1, "user_transcript": {"role": "user"}}',
    '{"type": "user_transcript", "event_id": 1e400, "user_transcript": []}',
    '{"type": "error", "message": 5}',
    "[" * DEEP + "]" * DEEP,
    '{"a":' * DEEP + "1" + "}" * DEEP,
    '{"type": "user_transcript", "event_id": 1, "user_transcript": ' + "[" * DEEP + "]" * DEEP + "}",
    "\ufeff" + '{"type": "ping"',
    '{"type": "user_transcript", "event_id": 1, "user_transcript": [], "x": NaN',
]
MALFORMED_BINARY: list[bytes] = [
    b"\x00\x01\x02\x03",
    b"\xff\xfe\xfd",
    b'{"type": "ping"\xff}',
    b'\xc3\x28{"type": "init", "conversation_id": "x"}',
    b"\x89PNG\r\n\x1a\n",
]


async def test_thirty_and_more_malformed_frames_are_logged_and_the_conversation_goes_on(server, raw):
    assert len(MALFORMED_TEXT) + len(MALFORMED_BINARY) >= 30
    peer = await connect(raw, server)
    try:
        mark = server.mark()
        for text in MALFORMED_TEXT:
            await peer.send_text(text)
        for data in MALFORMED_BINARY:
            await peer.send_frame(BINARY, data)
        # The conversation goes on: a ping is answered, then a transcript.
        await peer.send_json({"type": "ping"})
        opcode, payload = await peer.read_frame()
        assert (opcode, json.loads(payload)) == (TEXT, {"type": "pong"})
        logged = server.wait_count("frame_malformed", len(MALFORMED_TEXT) + len(MALFORMED_BINARY), start=mark)
        assert all(e["level"] == "warning" and e["error"] for e in logged)
        await peer.send_json(transcript(1, "ok"))
        opcode, payload = await peer.read_frame()
        assert json.loads(payload)["content"] == "You said: ok"
        (ours,) = {e["conversation_id"] for e in logged}
        # Only this conversation: one left open by an earlier test may end at any time on the shared server.
        ended = [e for e in server.entries("conversation_ended", mark) if e.get("conversation_id") == ours]
        assert ended == [], "the conversation went on"
    finally:
        peer.close()
    await still_answers(server)


async def test_invalid_utf8_in_a_text_frame_closes_that_socket_with_1007_and_nothing_else(server, raw):
    peer = await connect(raw, server)
    mark = server.mark()
    await peer.send_frame(TEXT, b'{"type": "ping", "x": "\xff\xfe"}')
    code, _frames = await peer.read_until_closed()
    peer.close()
    assert code == 1007, "RFC 6455: a text frame must be UTF-8 (binary frames are parsed and may be anything)"
    await seen(server, "socket_error", mark)
    await still_answers(server)


async def test_oversized_frames(server, raw):
    # Exactly the limit is accepted; one byte more closes with 1009; so does a length header that lies.
    empty = {"type": "user_transcript", "event_id": 1, "user_transcript": [{"role": "user", "content": ""}]}
    base = len(json.dumps(empty))
    exact = json.dumps({**empty, "user_transcript": [{"role": "user", "content": "a" * (MAX_FRAME - base)}]})
    assert len(exact) == MAX_FRAME
    async with client(server) as peer:
        await peer.send(exact)
        assert (await peer.reply(1)).text.startswith("You said: aaa")
    async with client(server) as peer:
        await peer.send(exact + " ")
        assert await peer.receive() == "closed"
        assert peer.ws.close_code == 1009
    liar = await connect(raw, server)
    await liar.send_raw(encode_frame(TEXT, b"{}", declared_length=2**40))  # claims a terabyte
    code, _ = await liar.read_until_closed()
    liar.close()
    assert code == 1009
    await still_answers(server)


# --- peers that do not read ---------------------------------------------------------------------------


async def test_a_consumer_that_reads_nothing_is_closed_and_costs_nothing_after(server, raw):
    baseline = server.fds()
    mark = server.mark()
    peer = await connect(raw, server, rcvbuf=4096)
    # A reply far bigger than every buffer on the way (outbox bounds, transport, kernel), asked for
    # at once: the write timeout (1 s after the writes stall) must come well before the second
    # heartbeat (2-3 s), whose missing pong would close the peer for another reason.
    await peer.send_json(transcript(1, "flood 16384"))
    started = await seen(server, "conversation_started", mark)
    closed = await seen(server, "peer_closed", mark, conversation_id=started["conversation_id"])
    assert closed["reason"] == "not_reading" and closed["code"] == 1008
    stuck = await seen(server, "peer_not_reading", mark, conversation_id=started["conversation_id"])
    assert stuck["reason"] == "write_timeout"
    end = await ended(server, started["conversation_id"])
    assert end["reason"] == "not_reading"
    await seen(server, "faulty_cancelled", mark, conversation_id=started["conversation_id"])
    peer.close()
    fds_back_to(server, baseline)
    await still_answers(server)


async def test_a_slow_but_reading_consumer_gets_everything_and_others_are_not_held_up(server, raw):
    mark = server.mark()
    peer = await connect(raw, server, rcvbuf=8192)
    other: asyncio.Task[None] | None = None
    try:
        await peer.send_json(transcript(1, "flood 512"))
        text: list[str] = []
        unpaused = 0
        while True:
            opcode, payload = await peer.read_frame()
            if opcode == PING:  # answering pings is part of reading
                await peer.send_frame(PONG, payload)
                continue
            assert opcode == TEXT, f"unexpected frame {opcode}: {payload[:80]!r}"
            frame = json.loads(payload)
            if frame["is_final"]:
                break
            text.append(frame["content"])
            if other is None:  # another conversation meanwhile: not held up by the slow one
                other = asyncio.create_task(still_answers(server))
            unpaused += len(payload)
            if unpaused > 16 * 1024:
                # The peer is slow: it pauses now and then (the behaviour under test, not a wait).
                await asyncio.sleep(0.01)
                unpaused = 0
    finally:
        peer.close()
    assert other is not None
    await other
    assert len("".join(text)) >= 500 * 1024, "the whole reply arrived"
    assert server.entries("peer_closed", mark) == [], "a slow peer that reads is not closed"


async def test_a_ping_flood_without_reads_stays_bounded_and_is_closed(server, raw):
    baseline_rss, baseline_fds = server.rss(), server.fds()
    mark = server.mark()
    peer = await connect(raw, server, rcvbuf=4096)
    started = await seen(server, "conversation_started", mark)
    batch = b"".join(encode_frame(TEXT, b'{"type": "ping"}') for _ in range(500))
    batch += b"".join(encode_frame(PING, b"are you there") for _ in range(100))
    closing = asyncio.create_task(seen(server, "peer_closed", mark, conversation_id=started["conversation_id"]))
    pings, peak = 0, 0
    try:
        while not closing.done():  # flood until the server gives up on this peer
            await peer.send_raw(batch)
            pings += 600
            if pings % 60_000 == 0:
                peak = max(peak, server.rss() - baseline_rss)
            await asyncio.sleep(0)  # a yield, so that the log watcher's answer is seen
    except OSError:
        pass  # reset by the server
    closed = await closing
    peak = max(peak, server.rss() - baseline_rss)
    peer.close()
    assert closed["reason"] == "not_reading"
    assert pings >= 60_000, "a real flood"
    assert peak < 4 * MiB, f"{pings} pings grew the server by {peak / MiB:.1f} MiB"
    await ended(server, started["conversation_id"])
    fds_back_to(server, baseline_fds)
    await still_answers(server)


# --- runtimes that misbehave ----------------------------------------------------------------------------


async def test_a_stalled_runtime_gets_the_filler_and_an_interruption_still_works(server):
    mark = server.mark()
    async with client(server) as peer:
        await peer.say("stall")
        filler = await peer.receive()
        assert filler["content"] == "One moment. " and filler["event_id"] == 1
        await peer.say("hello again")
        assert (await peer.reply(2)).text == "You said: hello again"
        cancelled = await seen(server, "faulty_cancelled", mark)
        assert cancelled["event_id"] == 1


async def test_a_runtime_failing_mid_stream_keeps_the_text_apologises_and_ends_once(server):
    async with client(server) as peer:
        await peer.say("fail")
        reply = await peer.reply(1)
        assert reply.text == "Partial Sorry, something went wrong on my side."
        await peer.ping()
        assert await peer.receive() == {"type": "pong"}, "exactly one is_final, nothing after it"
        await peer.say("and now")
        assert (await peer.reply(2)).text == "You said: and now"


# --- handshakes -------------------------------------------------------------------------------------


async def test_five_hundred_bad_jwt_handshakes_leave_nothing_behind(server):
    wrong_key = sign_speech_engine_jwt("sk_not_the_servers_key")
    connector = aiohttp.TCPConnector(force_close=True, limit=20)

    async def attempt(session: aiohttp.ClientSession, token: str) -> int:
        try:
            async with session.ws_connect(server.url, headers={JWT_HEADER: token}):
                return 101
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status

    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(attempt(session, wrong_key) for _ in range(50)))  # warm-up
        fds_back_to(server, server.fds())
        baseline_rss, baseline_fds = server.rss(), server.fds()
        tokens = [wrong_key, "garbage", "Bearer x.y.z", ""] * 125
        statuses = await asyncio.gather(*(attempt(session, token) for token in tokens))
    assert statuses == [401] * 500
    fds_back_to(server, baseline_fds)
    growth = server.rss() - baseline_rss
    assert growth < 2 * MiB, f"500 refused handshakes grew the server by {growth / MiB:.2f} MiB"


async def test_half_open_sockets_are_closed(server, raw):
    baseline = server.fds()
    # Before the upgrade: a silent connection, and one that never finishes its request.
    silent = await RawPeer.open(server.port)
    partial = await RawPeer.open(server.port)
    raw.extend([silent, partial])
    await partial.send_raw(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    # After the upgrade: a peer that vanished (no FIN, no RST, no pong).
    mark = server.mark()
    gone = await connect(raw, server)
    started = await seen(server, "conversation_started", mark)
    try:
        closed = await seen(server, "peer_closed", mark, conversation_id=started["conversation_id"])
        assert closed["reason"] == "not_reading" and "no pong" in closed["detail"]
        assert (await ended(server, started["conversation_id"]))["reason"] == "not_reading"
        fds_back_to(server, baseline)  # the pre-upgrade ones too (server.idle_timeout_s)
    finally:
        for peer in (silent, partial, gone):
            peer.close()


async def test_a_socket_that_never_sends_init_is_closed_with_1008(server, raw):
    mark = server.mark()
    peer = await connect(raw, server, init=False)
    try:
        code, frames = await peer.read_until_closed()
        assert code == 1008
        assert frames == [], "nothing was said to it"
    finally:
        peer.close()
    closed = await seen(server, "peer_closed", mark, reason="no_init")
    assert closed["code"] == 1008


# --- many conversations ---------------------------------------------------------------------------------


async def test_a_connection_flood_past_max_conversations_gets_503_and_the_open_ones_go_on():
    with ServerProcess({"SERVER__MAX_CONVERSATIONS": "4"}) as small:
        peers = [client(small) for _ in range(4)]
        for peer in peers:
            await peer.connect()
            await peer.say("hello")
            assert (await peer.reply()).text == "You said: hello"

        async def attempt() -> int:
            try:
                async with client(small):
                    return 101
            except aiohttp.WSServerHandshakeError as exc:
                return exc.status

        statuses = await asyncio.gather(*(attempt() for _ in range(50)))
        assert statuses == [503] * 50
        for index, peer in enumerate(peers):  # unaffected
            await peer.say(f"still {index}")
            assert (await peer.reply()).text == f"You said: still {index}"
        mark = small.mark()
        await peers.pop().disconnect()
        await seen(small, "conversation_ended", mark)
        async with client(small) as late:  # a freed slot is taken again
            await late.say("my turn")
            assert (await late.reply()).text == "You said: my turn"
        for peer in peers:
            await peer.disconnect()


async def test_sigterm_with_twenty_streaming_conversations_closes_all_with_1001_and_exits_0():
    # No drain: the turns are cut at once (test_drain and tests/deploy cover SIGTERM with a drain).
    server = ServerProcess({"SERVER__DRAIN_TIMEOUT_S": "0"}).start()
    peers = [client(server) for _ in range(20)]
    try:
        for peer in peers:
            await peer.connect()
            await peer.say("slow")
        for peer in peers:
            first = await peer.receive()
            assert first["event_id"] == 1 and not first["is_final"], "streaming"

        async def until_closed(peer: SpeechEngineClient) -> int | None:
            while await peer.receive(timeout=20) != "closed":
                pass
            return peer.ws.close_code

        closes = asyncio.gather(*(until_closed(peer) for peer in peers))
        status = await asyncio.to_thread(server.terminate)
        assert await closes == [1001] * 20
        assert status == 0
        assert len(server.entries("faulty_cancelled")) == 20
        assert {e["reason"] for e in server.entries("conversation_ended")} == {"shutdown"}
    finally:
        for peer in peers:
            await peer.disconnect()
        server.terminate()
