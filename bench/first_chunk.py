"""Transcript → first chunk and → final: voice-channel vs. the official SDK's server.

Each server runs in its own process: ``voice-channel serve --runtime echo`` (with everything it
does on top: JWT check at the handshake, schema validation, the trust boundary, hooks, speech
shaping and chunking, structured logging at info level) and the SDK's ``SpeechEngineServer``
with an echo handler producing the same words (``bench/sdk_echo_server.py``). One probe process
plays ElevenLabs for both, alternating turn by turn, so both see the same machine load. A
conversation lasts ``--turns-per-conversation`` turns (the history grows, as it does for real)
and is then replaced by a new one. A second pass does the same with short (2-turn) conversations,
where the SDK is not slowed by a long history. Each pass also splits the first-chunk median between
a connection's first turn (sent right behind ``init``, which our server answers by opening the
runtime session) and its later turns. ``--floor`` adds a third server, a bare aiohttp
WebSocket echo (``bench/bare_aiohttp_server.py``): what aiohttp alone costs per turn.

Run: ``make bench`` or ``.venv/bin/python bench/first_chunk.py --turns 2000``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "plugin"))

from voice_channel.elevenlabs.client import SpeechEngineClient  # noqa: E402

UTTERANCE = "please add two liters of milk and a loaf of bread to my shopping list"


async def one_turn(client: SpeechEngineClient, timeout: float = 10.0) -> tuple[float, float, int, str]:
    """Send the next transcript; return (first chunk s, final s, frames, the reply's text).

    Raises ``TimeoutError`` past ``timeout`` and ``ConnectionError`` if the server closed the socket.
    """
    client.history.append({"role": "user", "content": UTTERANCE})
    client.event_id += 1
    event_id = client.event_id
    started = time.perf_counter()
    deadline = started + timeout
    await client.send_transcript(event_id)
    first = None
    parts: list[str] = []
    while True:
        frame = await client.receive(timeout=max(deadline - time.perf_counter(), 0.001))
        if frame == "closed":
            raise ConnectionError("closed")
        if frame.get("type") != "agent_response" or frame.get("event_id") != event_id:
            continue
        now = time.perf_counter()
        if first is None:
            first = now
        parts.append(frame["content"])
        if frame["is_final"]:
            break
    text = "".join(parts)
    client.heard(text)
    return first - started, now - started, len(parts), text


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise TimeoutError(f"nothing listening on {port}")


class Target:
    def __init__(self, name: str, url: str, key: str, turns_per_conversation: int) -> None:
        self.name, self.url, self.key = name, url, key
        self.turns_per_conversation = turns_per_conversation
        self.client: SpeechEngineClient | None = None
        self.first: list[float] = []
        self.final: list[float] = []
        self.frames: list[int] = []
        #: Per recorded turn: whether it was its connection's first (it comes right behind ``init``).
        self.opening: list[bool] = []

    async def turn(self, record: bool) -> None:
        opening = self.client is None or self.client.event_id >= self.turns_per_conversation
        if opening:
            if self.client is not None:
                await self.client.disconnect()
            self.client = SpeechEngineClient(self.url, api_key=self.key)
            await self.client.connect()
        first, final, frames, text = await one_turn(self.client)
        assert text == f"You said: {UTTERANCE}", text
        if record:
            self.first.append(first * 1e3)
            self.final.append(final * 1e3)
            self.frames.append(frames)
            self.opening.append(opening)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.disconnect()


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def report(length: int, targets: list[Target]) -> None:
    print(f"\n{length} turns per conversation")
    print(f"{'':16} {'first p50':>10} {'first p99':>10} {'final p50':>10} {'final p99':>10} {'frames':>7}  (ms)")
    for t in targets:
        print(
            f"{t.name:16} {pct(t.first, 50):10.3f} {pct(t.first, 99):10.3f} {pct(t.final, 50):10.3f} "
            f"{pct(t.final, 99):10.3f} {statistics.median(t.frames):7.0f}"
        )
    ours_t, sdk_t, *floor = targets
    print(f"ratio voice-channel / SDK: {ratios(ours_t, sdk_t)}")
    # The first turn of a connection comes right behind ``init``: a server that does work for
    # ``init`` (ours opens the runtime session and binds the conversation's logger; the SDK's
    # echo has no ``on_init``) does it while that transcript waits.
    split = {
        t.name: [statistics.median(v) for v in (opening_turns(t, True), opening_turns(t, False)) if v] for t in targets
    }
    if all(len(v) == 2 for v in split.values()):
        print("first p50, a connection's first turn / its later turns (ms): ", end="")
        print(", ".join(f"{name} {first:.3f} / {later:.3f}" for name, (first, later) in split.items()))
        (ours_first, ours_later), (sdk_first, sdk_later) = split[ours_t.name], split[sdk_t.name]
        print(
            f"ratio voice-channel / SDK: first turns {ours_first / sdk_first:.2f}, "
            f"later turns {ours_later / sdk_later:.2f}"
        )
    for bare in floor:
        print(f"ratio voice-channel / bare aiohttp: {ratios(ours_t, bare)}")
        print(f"ratio SDK / bare aiohttp: {ratios(sdk_t, bare)}")


def opening_turns(target: Target, opening: bool) -> list[float]:
    return [first for first, flag in zip(target.first, target.opening, strict=True) if flag is opening]


def ratios(a: Target, b: Target) -> str:
    return ", ".join(
        f"{label} p{q} {pct(getattr(a, label), q) / pct(getattr(b, label), q):.2f}"
        for label in ("first", "final")
        for q in (50, 99)
    )


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=2000, help="measured turns per server")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--turns-per-conversation", type=int, default=20)
    parser.add_argument(
        "--short-turns-per-conversation", type=int, default=2, help="the second pass: short conversations"
    )
    parser.add_argument(
        "--ours-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for our server (experiments, e.g. VOICE_CHANNEL_LOG_LEVEL=warning)",
    )
    parser.add_argument(
        "--floor", action="store_true", help="also measure a bare aiohttp echo (what aiohttp alone costs)"
    )
    args = parser.parse_args()

    key = f"sk_bench_{secrets.token_hex(16)}"
    ours_port, sdk_port, bare_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICE_CHANNEL_")}
    env.update(ELEVENLABS_API_KEY=key, VOICE_CHANNEL_LOG_LEVEL="info", VOICE_CHANNEL_LOG_FORMAT="json")
    bin_dir = Path(sys.executable).parent
    ours_env = dict(env, **dict(item.split("=", 1) for item in args.ours_env))
    ours = subprocess.Popen(  # noqa: ASYNC220 - started once, before anything is timed
        [str(bin_dir / "voice-channel"), "serve", "--runtime", "echo", "--port", str(ours_port)],
        env=ours_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    sdk = subprocess.Popen(  # noqa: ASYNC220
        [sys.executable, str(HERE / "sdk_echo_server.py"), "--port", str(sdk_port), "--api-key", key],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    servers = [ours, sdk]
    if args.floor:
        servers.append(
            subprocess.Popen(  # noqa: ASYNC220
                [sys.executable, str(HERE / "bare_aiohttp_server.py"), "--port", str(bare_port)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    # Long conversations (the history grows, which slows the SDK's parsing) and short ones
    # (2 turns, where it does not): the same servers, measured pass after pass.
    lengths = dict.fromkeys([args.turns_per_conversation, args.short_turns_per_conversation])
    passes = {
        length: [
            Target("voice-channel", f"ws://127.0.0.1:{ours_port}/ws", key, length),
            Target("elevenlabs SDK", f"ws://127.0.0.1:{sdk_port}/ws", key, length),
            *([Target("bare aiohttp", f"ws://127.0.0.1:{bare_port}/ws", key, length)] if args.floor else []),
        ]
        for length in lengths
    }
    try:
        await wait_listening(ours_port, ours)
        await wait_listening(sdk_port, sdk)
        if args.floor:
            await wait_listening(bare_port, servers[2])
        for targets in passes.values():
            for i in range(args.warmup + args.turns):
                # Rotated, so that no server always runs right after the same other one.
                shift = i % len(targets)
                for target in targets[shift:] + targets[:shift]:
                    await target.turn(record=i >= args.warmup)
            for target in targets:
                await target.close()
    finally:
        for targets in passes.values():
            for target in targets:
                await target.close()
        for proc in servers:
            proc.terminate()
            proc.wait(timeout=15)

    print(
        f"{args.turns} turns per server, utterance of {len(UTTERANCE.split())} words, "
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    for length, pair in passes.items():
        report(length, pair)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
