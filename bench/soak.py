"""Soak: many short conversations against ``voice-channel serve``; the server must not grow.

Starts ``voice-channel serve --runtime echo`` in a child process (JWT auth on, info logging as
JSON, the way it runs for real), then plays ElevenLabs for ``--conversations`` conversations
(``init``, two turns, ``close``), ``--concurrency`` at a time. At 1k, 5k and 10k conversations (and
at the end) it waits for the open ones to finish and prints the server's resident memory
(``/proc/<pid>/status`` VmRSS) and open file descriptors (``/proc/<pid>/fd``).

The bar: RSS growth from the 1k to the 10k checkpoint under 5 MiB, and the file descriptors
back to their baseline (before the first conversation) at every checkpoint. Exit status 1 if
either is missed.

Run: ``.venv/bin/python bench/soak.py`` (about a minute on 2 cores).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "plugin"))

sys.path.insert(0, str(HERE))

from first_chunk import free_port, wait_listening  # noqa: E402
from voice_channel.elevenlabs.client import SpeechEngineClient  # noqa: E402

MiB = 1024 * 1024
CHECKPOINTS = (1_000, 5_000, 10_000)


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def settle_fds(pid: int, baseline: int, timeout: float = 10.0) -> int:
    """The server's fd count once it is back to ``baseline`` (closed sockets take a moment), or after ``timeout``."""
    deadline = time.monotonic() + timeout
    count = fds(pid)
    while count > baseline and time.monotonic() < deadline:
        await asyncio.sleep(0.05)  # polling /proc: the server does not announce closed fds
        count = fds(pid)
    return count


async def one_conversation(url: str, key: str, index: int) -> None:
    async with SpeechEngineClient(url, api_key=key, heartbeat=None) as client:
        for turn in ("add milk to my list", "and bread please"):
            await client.say(f"{turn} {index}")
            reply = await client.reply()
            assert reply.text == f"You said: {turn} {index}", reply.text
            client.heard(reply.text)
        await client.close_conversation()
        assert await client.receive() == "closed"


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=20)
    args = parser.parse_args()

    key = f"sk_soak_{secrets.token_hex(16)}"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VOICE_CHANNEL_", "ELEVENLABS_"))}
    env.update(ELEVENLABS_API_KEY=key, VOICE_CHANNEL_LOG_LEVEL="info", VOICE_CHANNEL_LOG_FORMAT="json")
    server = subprocess.Popen(  # noqa: ASYNC220 - started once, before anything is measured
        [str(Path(sys.executable).parent / "voice-channel"), "serve", "--runtime", "echo", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"ws://127.0.0.1:{port}/ws"
    rows: list[tuple[int, float, int, int]] = []
    try:
        await wait_listening(port, server)
        baseline_fds = await settle_fds(server.pid, fds(server.pid))
        rows.append((0, rss(server.pid) / MiB, baseline_fds, baseline_fds))
        print(f"server pid {server.pid}; baseline: RSS {rows[0][1]:.1f} MiB, {baseline_fds} fds", flush=True)
        print(f"{'conversations':>13}  {'RSS MiB':>8}  {'fds busy':>8}  {'fds idle':>8}  {'conv/s':>6}", flush=True)
        queue: asyncio.Queue[int] = asyncio.Queue()
        started = time.perf_counter()
        done = 0
        marks = [c for c in CHECKPOINTS if c <= args.conversations]
        if args.conversations not in marks:
            marks.append(args.conversations)
        for mark in marks:
            for index in range(done, mark):
                queue.put_nowait(index)
            busy_fds = 0

            async def worker() -> None:
                nonlocal busy_fds
                while not queue.empty():
                    index = queue.get_nowait()
                    await one_conversation(url, key, index)
                    if index % 97 == 0:
                        busy_fds = max(busy_fds, fds(server.pid))

            await asyncio.gather(*(worker() for _ in range(args.concurrency)))
            done = mark
            idle_fds = await settle_fds(server.pid, baseline_fds)
            memory = rss(server.pid) / MiB
            rows.append((mark, memory, busy_fds, idle_fds))
            rate = done / (time.perf_counter() - started)
            print(f"{mark:>13}  {memory:>8.1f}  {busy_fds:>8}  {idle_fds:>8}  {rate:>6.0f}", flush=True)
    finally:
        server.terminate()
        server.wait(30)
    by_mark = {mark: (memory, idle) for mark, memory, _busy, idle in rows}
    ok = all(idle <= baseline_fds for _memory, idle in by_mark.values())
    print(f"fds back to baseline ({baseline_fds}) at every checkpoint: {'yes' if ok else 'NO'}")
    if 1_000 in by_mark and 10_000 in by_mark:
        growth = by_mark[10_000][0] - by_mark[1_000][0]
        ok = ok and growth < 5
        print(f"RSS growth 1k → 10k: {growth:+.2f} MiB (bar: < 5 MiB): {'ok' if growth < 5 else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
