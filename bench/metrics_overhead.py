"""What the Prometheus metrics cost per turn: voice-channel with ``metrics.enabled`` off, on, and on in
prometheus-client's multiprocess mode (as under gunicorn: values in memory-mapped files).

Three ``voice-channel serve --runtime echo`` processes, one probe playing ElevenLabs for all of them turn by
turn (``bench/first_chunk.py``'s probe, so the figures compare with its), alternating the order so that
all three see the same machine load. Reports first chunk and final latency (p50/p99) and the server's CPU
time per turn (from /proc), with the ratios to the server without metrics.

Run: ``.venv/bin/python bench/metrics_overhead.py --turns 3000``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from first_chunk import Target, free_port, pct, wait_listening  # noqa: E402


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=3000, help="measured turns per server")
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--turns-per-conversation", type=int, default=20)
    args = parser.parse_args()

    key = f"sk_bench_{secrets.token_hex(16)}"
    base = {k: v for k, v in os.environ.items() if not k.startswith("VOICE_CHANNEL_")}
    base.pop("PROMETHEUS_MULTIPROC_DIR", None)
    base.update(ELEVENLABS_API_KEY=key, VOICE_CHANNEL_LOG_LEVEL="info", VOICE_CHANNEL_LOG_FORMAT="json")
    multiproc = tempfile.mkdtemp(prefix="voice-channel-bench-metrics-")
    variants = {
        "metrics off": {"VOICE_CHANNEL_METRICS__ENABLED": "false"},
        "metrics on": {},
        "on, multiprocess": {"PROMETHEUS_MULTIPROC_DIR": multiproc},
    }
    bin_dir = Path(sys.executable).parent
    servers: dict[str, tuple[subprocess.Popen[bytes], Target]] = {}
    try:
        for name, extra in variants.items():
            port = free_port()
            proc = subprocess.Popen(  # noqa: ASYNC220 - started once, before anything is timed
                [str(bin_dir / "voice-channel"), "serve", "--runtime", "echo", "--port", str(port)],
                env={**base, **extra},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            servers[name] = (proc, Target(name, f"ws://127.0.0.1:{port}/ws", key, args.turns_per_conversation))
        for proc, target in servers.values():
            await wait_listening(int(target.url.split(":")[2].split("/")[0]), proc)
        order = list(servers.values())
        cpu: dict[str, float] = {}
        for i in range(args.warmup + args.turns):
            if i == args.warmup:
                cpu = {t.name: cpu_seconds(p.pid) for p, t in order}
            shift = i % len(order)
            for _proc, target in order[shift:] + order[:shift]:
                await target.turn(record=i >= args.warmup)
        cpu = {t.name: cpu_seconds(p.pid) - cpu[t.name] for p, t in order}
    finally:
        for proc, target in servers.values():
            await target.close()
            proc.terminate()
            proc.wait(timeout=15)
        shutil.rmtree(multiproc, ignore_errors=True)

    print(f"{args.turns} turns per server, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    print(f"{'':18} {'first p50':>10} {'first p99':>10} {'final p50':>10} {'final p99':>10} {'CPU/turn':>9}")
    off = servers["metrics off"][1]
    for name, (_proc, t) in servers.items():
        per_turn = cpu[name] / args.turns * 1e6
        print(
            f"{name:18} {pct(t.first, 50):9.3f}ms {pct(t.first, 99):9.3f}ms {pct(t.final, 50):9.3f}ms "
            f"{pct(t.final, 99):9.3f}ms {per_turn:7.0f}µs"
        )
    for name, (_proc, t) in servers.items():
        if t is off:
            continue
        print(
            f"ratio {name} / off: first p50 {pct(t.first, 50) / pct(off.first, 50):.3f}, "
            f"p99 {pct(t.first, 99) / pct(off.first, 99):.3f}; final p50 {pct(t.final, 50) / pct(off.final, 50):.3f}; "
            f"CPU per turn {cpu[name] / cpu['metrics off']:.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
