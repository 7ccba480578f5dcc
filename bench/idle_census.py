"""What one idle conversation holds: bytes and objects per conversation, by source line and by type.

Our server runs in this process (``create_app`` with the ``echo`` runtime, JWT check on, logging
at info to /dev/null, the GC policy applied as ``voice-channel serve`` does); the conversations are
opened by a separate process (``bench/scale.py``'s load generator: JWT-signed handshake, ``init``,
one turn each), so that nothing of the client side is counted. After the N conversations went idle,
the census compares with the state before they opened:

* tracemalloc: bytes allocated and still held, per conversation, grouped by source line (``--lines``)
  and by file;
* gc: tracked objects per conversation, by type (what a ``__slots__`` or a lazily created object saves);
* RSS: the resident-set growth per conversation (what ``bench/scale.py`` reports; tracemalloc
  does not see allocations made outside Python's allocator, RSS does not see freed-but-kept pages).

``--bare`` replaces our application by a bare aiohttp WebSocket handler (read a frame, answer it):
the floor that any aiohttp-based server pays per open WebSocket, against which our own per-conversation
state is measured.

``--rss-only`` leaves tracemalloc off (its own bookkeeping inflates RSS) to compare RSS alone.

Run: ``.venv/bin/python bench/idle_census.py --conversations 1000`` (and again with ``--bare``).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import secrets
import sys
import tracemalloc
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "plugin"))
sys.path.insert(0, str(HERE))

from aiohttp import web  # noqa: E402

from bare_aiohttp_server import handler as bare_handler  # noqa: E402
from first_chunk import free_port  # noqa: E402


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def build_app(bare: bool, key: str) -> web.Application:
    if bare:
        app = web.Application()
        app.router.add_get("/ws", bare_handler)  # the floor first_chunk.py --floor measures too
        return app
    from voice_channel.app import create_app
    from voice_channel.logging import configure_logging
    from voice_channel.settings import load_settings

    os.environ.update(
        ELEVENLABS_API_KEY=key, VOICE_CHANNEL_RUNTIME="echo", VOICE_CHANNEL_SERVER__MAX_CONVERSATIONS="100000"
    )
    settings = load_settings()
    configure_logging("info", "json", stream=open(os.devnull, "w"), secrets=[key])
    logging.getLogger("aiohttp.access").disabled = True
    return create_app(settings)


def describe(traceback: tracemalloc.Traceback) -> str:
    """The allocating line, and with ``--frames`` > 1 the innermost voice_channel line that led to it."""
    frames = list(traceback)
    text = f"{'/'.join(Path(frames[-1].filename).parts[-2:])}:{frames[-1].lineno}"
    ours = next((f for f in reversed(frames[:-1]) if "voice_channel" in f.filename), None)
    if ours is not None:
        text += f" <- {'/'.join(Path(ours.filename).parts[-2:])}:{ours.lineno}"
    return text


def by_type() -> Counter[str]:
    return Counter(type(o).__qualname__ for o in gc.get_objects())


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=1000)
    parser.add_argument("--bare", action="store_true", help="a bare aiohttp WebSocket handler instead of ours")
    parser.add_argument("--lines", type=int, default=25, help="source lines to show")
    parser.add_argument("--frames", type=int, default=1, help="traceback depth grouped by (1: the allocating line)")
    parser.add_argument(
        "--rss-only",
        action="store_true",
        help="no tracemalloc (it inflates RSS): only RSS and gc objects per conversation",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=6.0,
        help="seconds between the last conversation opening and the census (default: past the 5 s init deadline)",
    )
    args = parser.parse_args()
    n = args.conversations
    key = f"sk_bench_{secrets.token_hex(16)}"

    if not args.rss_only:
        tracemalloc.start(args.frames)
    app = build_app(args.bare, key)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    if not args.bare:
        from voice_channel.serving.gc_policy import apply_gc_policy

        apply_gc_policy()
    url = f"ws://127.0.0.1:{port}/ws"
    generator = await asyncio.create_subprocess_exec(
        sys.executable, str(HERE / "scale.py"), "--worker", str(n), "--url", url, "--key", key,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert generator.stdin is not None and generator.stdout is not None
    try:
        # Warm-up conversations are not needed: the first transcript of every conversation pays
        # the same one-off costs (imports, caches) as a warm-up would, and they cancel out in N.
        gc.collect()
        before_snap = None if args.rss_only else tracemalloc.take_snapshot()
        before_types, before_rss = by_type(), rss_kib()
        opened = json.loads(await generator.stdout.readline())
        if opened["opened"] != n:
            print(f"only {opened['opened']} of {n} opened: {str(opened['errors'])[:300]}")
            return 1
        # The last replies' tails, and (by default) past the init deadline: until then every
        # conversation also holds the timer of that deadline, which a conversation idle for longer
        # than server.init_timeout_s (5 s) no longer does.
        await asyncio.sleep(args.settle)
        gc.collect()
        after_snap = None if args.rss_only else tracemalloc.take_snapshot()
        after_types, after_rss = by_type(), rss_kib()
        generator.stdin.write(b"0\nclose\n")
        await generator.stdin.drain()
        await generator.stdout.readline()
    finally:
        with_timeout = asyncio.wait_for(generator.wait(), 60)
        try:
            await with_timeout
        except TimeoutError:
            generator.kill()
        await runner.cleanup()

    label = "bare aiohttp WebSocket" if args.bare else "voice-channel"
    print(f"{label}: {n} idle conversations, Python {sys.version.split()[0]}, load {os.getloadavg()[0]:.1f}")
    print(f"  RSS growth:  {(after_rss - before_rss) / n:.2f} KiB per idle conversation")
    delta = after_types - before_types
    if after_snap is None or before_snap is None:
        print(f"  gc-tracked objects: {sum(delta.values()) / n:.2f} per idle conversation")
        return 0
    diff = after_snap.compare_to(before_snap, "traceback" if args.frames > 1 else "lineno")
    total = sum(stat.size_diff for stat in diff)
    print(f"  tracemalloc: {total / n / 1024:.2f} KiB per idle conversation")
    print("\n  by source line (bytes per conversation, blocks per conversation):")
    for stat in diff[: args.lines]:
        where = describe(stat.traceback)
        print(f"  {stat.size_diff / n:9.1f} B {stat.count_diff / n:6.2f}  {where}")
    files: Counter[str] = Counter()
    for stat in diff:
        files["/".join(Path(stat.traceback[-1].filename).parts[-2:])] += stat.size_diff
    print("\n  by file (bytes per conversation):")
    for name, size in files.most_common(12):
        print(f"  {size / n:9.1f} B  {name}")
    print("\n  gc-tracked objects per conversation, by type:")
    for name, count in delta.most_common(20):
        print(f"  {count / n:7.2f}  {name}")
    print(f"  {sum(delta.values()) / n:7.2f}  (all)")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
