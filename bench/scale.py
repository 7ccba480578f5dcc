"""N concurrent conversations on one core: voice-channel vs. the official SDK's server.

Each server runs alone, as its own process pinned to one core (``taskset -c 0`` by default):
``voice-channel serve --runtime echo`` (JWT check, schema validation, trust boundary, hooks,
shaping, chunking, structured logging at info) and the SDK's ``SpeechEngineServer`` with the
same echo (``bench/sdk_echo_server.py``). They are measured one after the other on the same
core (the order alternates between repetitions), each in a fresh process per N. The load
generator is this script's worker processes, pinned to the other core(s); each plays ElevenLabs
for its share of the conversations with :class:`voice_channel.elevenlabs.client.SpeechEngineClient` (JWT
signed handshake, ``init``, full history, increasing ``event_id``) and reports its own CPU use
and event-loop lag, so a saturated generator shows instead of passing for a slow server.

Per server and N:

1. warm up (a few conversations), wait until the server is idle, read its RSS;
2. open N conversations (each takes one turn), wait until idle, read RSS again: the difference
   over N is the memory per idle conversation (RSS cannot be read "after gc" from outside; with
   N in the thousands the garbage left is small against the delta);
3. for ``--duration`` seconds every conversation sends one transcript every ``--period`` s
   (jittered ±25 %, staggered start) and reads the reply: first chunk and final latency, turns
   lost (no final within ``--turn-timeout``); the server's CPU (``/proc/<pid>/stat`` utime +
   stime) over the window divided by the turns is the CPU per turn.

Then, on a quiet server pair whose echo pauses ``--interrupt-delay-ms`` between words (so a
reply is in flight), ``--interruptions`` times: a new transcript while the previous reply
streams, timed to the new turn's first chunk.

Run: ``make bench-scale`` or ``.venv/bin/python bench/scale.py --conversations 1000 2000 --duration 30``.
``--ours-env VOICE_CHANNEL_SERVER__GC_POLICY=false`` measures our server without its GC policy;
``--compare-gc`` measures ours both ways in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "plugin"))
sys.path.insert(0, str(HERE))

from first_chunk import UTTERANCE, free_port, one_turn, pct, wait_listening  # noqa: E402
from voice_channel.elevenlabs.client import SpeechEngineClient  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
GC_OFF = "VOICE_CHANNEL_SERVER__GC_POLICY=false"


# --------------------------------------------------------------------------- the load generator


@dataclass
class WorkerStats:
    first: list[float] = field(default_factory=list)
    final: list[float] = field(default_factory=list)
    frames: int = 0
    turns: int = 0
    lost: int = 0
    dropped: int = 0
    lag: list[float] = field(default_factory=list)


async def open_conversation(url: str, key: str, timeout: float, gate: asyncio.Semaphore) -> SpeechEngineClient:
    async with gate:
        client = SpeechEngineClient(url, api_key=key)
        await client.connect()
        await one_turn(client, timeout)
        return client


async def converse(client: SpeechEngineClient, stats: WorkerStats, end: float, period: float, timeout: float) -> None:
    next_at = time.monotonic() + random.uniform(0, period)
    while next_at < end:
        await asyncio.sleep(max(next_at - time.monotonic(), 0))
        try:
            first, final, frames, _ = await one_turn(client, timeout)
        except (TimeoutError, ConnectionError, OSError):
            stats.lost += 1
            if client.ws is None or client.ws.closed:
                stats.dropped += 1
                return
        else:
            stats.turns += 1
            stats.frames += frames
            stats.first.append(first * 1e3)
            stats.final.append(final * 1e3)
        next_at += period * random.uniform(0.75, 1.25)


async def watch_lag(samples: list[float], stop: asyncio.Event) -> None:
    """How late the event loop wakes a 10 ms sleep: the generator's own delay, added to every figure."""
    while not stop.is_set():
        started = time.perf_counter()
        await asyncio.sleep(0.01)
        samples.append((time.perf_counter() - started - 0.01) * 1e3)


async def read_line() -> str:
    return (await asyncio.to_thread(sys.stdin.readline)).strip()


def say(message: dict[str, Any]) -> None:
    print(json.dumps(message), flush=True)


async def worker(args: argparse.Namespace) -> int:
    """One generator process: opens its conversations, then runs the load window on command."""
    random.seed(args.seed)
    gate = asyncio.Semaphore(32)
    opened = await asyncio.gather(
        *(open_conversation(args.url, args.key, args.turn_timeout, gate) for _ in range(args.worker)),
        return_exceptions=True,
    )
    clients = [c for c in opened if isinstance(c, SpeechEngineClient)]
    errors = [repr(e) for e in opened if not isinstance(e, SpeechEngineClient)]
    say({"opened": len(clients), "errors": errors[:3], "failed": len(errors)})
    try:
        duration = float(await read_line())
        stats = WorkerStats()
        stop = asyncio.Event()
        lag = asyncio.create_task(watch_lag(stats.lag, stop))
        cpu0, wall0 = os.times(), time.monotonic()
        end = wall0 + duration
        await asyncio.gather(*(converse(c, stats, end, args.period, args.turn_timeout) for c in clients))
        cpu1, wall1 = os.times(), time.monotonic()
        stop.set()
        await lag
        cpu = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
        say(
            {
                "first": stats.first,
                "final": stats.final,
                "frames": stats.frames,
                "turns": stats.turns,
                "lost": stats.lost,
                "dropped": stats.dropped,
                "cpu_s": cpu,
                "wall_s": wall1 - wall0,
                "lag_p99": pct(stats.lag, 99) if len(stats.lag) > 1 else 0.0,
                "lag_max": max(stats.lag, default=0.0),
            }
        )
        await read_line()  # "close"
    finally:
        gate = asyncio.Semaphore(64)

        async def close(client: SpeechEngineClient) -> None:
            async with gate:
                await client.disconnect()

        await asyncio.gather(*(close(c) for c in clients), return_exceptions=True)
    return 0


# --------------------------------------------------------------------------- the servers


class Server:
    """A server process pinned to ``core``; its CPU time and RSS read from /proc."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], core: int, port: int) -> None:
        self.name, self.port = name, port
        self.url = f"ws://127.0.0.1:{port}/ws"
        self.stderr = tempfile.TemporaryFile()  # read after the process ends
        self.proc = subprocess.Popen(
            ["taskset", "-c", str(core), *argv], env=env, stdout=subprocess.DEVNULL, stderr=self.stderr
        )

    def gc_report(self, start: float, end: float) -> str:
        """After :meth:`stop`, under ``--gc-trace``: the collections in [start, end], per generation."""
        self.stderr.seek(0)
        for line in self.stderr.read().decode(errors="replace").splitlines():
            if line.startswith("gc_trace "):
                trace = json.loads(line[9:])
                inside = [c for c in trace["collections"] if start <= c[0] <= end]
                parts = []
                for gen in (0, 1, 2):
                    cpu = [c[3] for c in inside if c[1] == gen]
                    wall = [c[2] for c in inside if c[1] == gen]
                    parts.append(
                        f"gen{gen} {len(cpu)}x CPU total {sum(cpu):.0f} max {max(cpu, default=0):.1f} ms"
                        f" (wall max {max(wall, default=0):.1f})"
                    )
                return f"thresholds {trace['threshold']}, frozen {trace['frozen']}: " + "; ".join(parts)
        return "no gc trace"

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    async def until_idle(self, quiet_s: float = 0.5, limit_s: float = 20.0) -> None:
        """Wait until the server spends (almost) no CPU for ``quiet_s``."""
        deadline = time.monotonic() + limit_s
        before = self.cpu_s()
        while time.monotonic() < deadline:
            await asyncio.sleep(quiet_s)
            now = self.cpu_s()
            if now - before <= 2 / CLK_TCK:
                return
            before = now

    def census(self) -> list[dict[str, Any]]:
        """After :meth:`stop`, under ``--gc-trace``: the ``gc_objects`` lines written on SIGUSR1."""
        self.stderr.seek(0)
        lines = self.stderr.read().decode(errors="replace").splitlines()
        return [json.loads(line[11:]) for line in lines if line.startswith("gc_objects ")]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_server(
    kind: str,
    key: str,
    core: int,
    extra_env: list[str],
    delay_ms: int,
    capacity: int,
    gc_trace: list[str] | None = None,
) -> Server:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICE_CHANNEL_")}
    env.update(ELEVENLABS_API_KEY=key, VOICE_CHANNEL_LOG_LEVEL="info", VOICE_CHANNEL_LOG_FORMAT="json")
    port = free_port()
    if kind == "sdk":
        argv = [sys.executable, str(HERE / "sdk_echo_server.py"), "--port", str(port), "--api-key", key]
        return Server("elevenlabs SDK", [*argv, "--delay-ms", str(delay_ms)], env, core, port)
    env.update(
        VOICE_CHANNEL_SERVER__MAX_CONVERSATIONS=str(capacity),
        VOICE_CHANNEL_ECHO__DELAY_MS=str(delay_ms),
        **dict(item.split("=", 1) for item in extra_env),
    )
    argv = [str(Path(sys.executable).parent / "voice-channel"), "serve", "--runtime", "echo", "--port", str(port)]
    if gc_trace is not None:
        argv = [sys.executable, str(HERE / "gc_trace.py"), *gc_trace, *argv[1:]]
    return Server(kind, argv, env, core, port)


# --------------------------------------------------------------------------- one measurement


@dataclass
class Result:
    name: str
    n: int
    first: list[float]
    final: list[float]
    turns: int
    lost: int
    dropped: int
    failed_opens: int
    frames: int
    cpu_ms_per_turn: float
    server_cpu_pct: float
    kib_per_idle: float
    gen_cpu_pct: list[float]
    gen_lag_p99: float
    gen_lag_max: float
    load: tuple[float, float, float]


async def warm_up(url: str, key: str, conversations: int = 20) -> None:
    for _ in range(conversations):
        async with SpeechEngineClient(url, api_key=key) as client:
            for _ in range(2):
                await one_turn(client, 10.0)


async def measure(kind: str, name: str, n: int, args: argparse.Namespace, key: str, extra_env: list[str]) -> Result:
    trace = None
    if args.gc_trace and kind != "sdk":
        trace = ["--threshold", *map(str, args.gc_threshold)] if args.gc_threshold else []
    server = start_server(kind, key, args.server_core, extra_env, 0, n + 100, trace)
    window = (0.0, 0.0)
    workers: list[asyncio.subprocess.Process] = []
    try:
        await wait_listening(server.port, server.proc)
        await warm_up(server.url, key)
        await server.until_idle()
        rss0 = server.rss_kib()
        if trace is not None:
            server.proc.send_signal(signal.SIGUSR1)  # object census with no conversation open
            await server.until_idle()
        shares = [n // args.generators + (i < n % args.generators) for i in range(args.generators)]
        for i, share in enumerate(shares):
            workers.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    __file__,
                    "--worker",
                    str(share),
                    "--url",
                    server.url,
                    "--key",
                    key,
                    "--period",
                    str(args.period),
                    "--turn-timeout",
                    str(args.turn_timeout),
                    "--seed",
                    str(i),
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    limit=64 * 1024 * 1024,
                )
            )
        opened = [json.loads(await w.stdout.readline()) for w in workers]  # type: ignore[union-attr]
        failed = sum(o["failed"] for o in opened)
        if failed:
            print(f"  {name} N={n}: {failed} conversations failed to open, e.g. {opened[0]['errors']}", file=sys.stderr)
        await server.until_idle()
        rss1 = server.rss_kib()
        if trace is not None:
            server.proc.send_signal(signal.SIGUSR1)  # and with N idle conversations
            await server.until_idle()
        load = os.getloadavg()
        profiler = None
        if args.profile and kind != "sdk":
            out = f"{args.profile}-{name.split()[0]}-{n}.txt"
            profiler = await asyncio.create_subprocess_exec(
                *("py-spy", "record", "--nonblocking", "--format", "raw", "--rate", "250"),
                *("--duration", str(int(args.duration)), "--pid", str(server.proc.pid), "--output", out),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
        cpu0, started = server.cpu_s(), time.monotonic()
        for w in workers:
            w.stdin.write(f"{args.duration}\n".encode())  # type: ignore[union-attr]
            await w.stdin.drain()  # type: ignore[union-attr]
        reports = [json.loads(await w.stdout.readline()) for w in workers]  # type: ignore[union-attr]
        cpu1, window = server.cpu_s(), (started, time.monotonic())
        if profiler is not None:
            await profiler.wait()
        for w in workers:
            w.stdin.write(b"close\n")  # type: ignore[union-attr]
            await w.stdin.drain()  # type: ignore[union-attr]
        for w in workers:
            await w.wait()
        turns = sum(r["turns"] for r in reports)
        return Result(
            name=name,
            n=n,
            first=[x for r in reports for x in r["first"]],
            final=[x for r in reports for x in r["final"]],
            turns=turns,
            lost=sum(r["lost"] for r in reports),
            dropped=sum(r["dropped"] for r in reports),
            failed_opens=failed,
            frames=sum(r["frames"] for r in reports),
            cpu_ms_per_turn=(cpu1 - cpu0) * 1e3 / max(turns, 1),
            server_cpu_pct=100 * (cpu1 - cpu0) / (window[1] - window[0]),
            kib_per_idle=(rss1 - rss0) / max(n - failed, 1),
            gen_cpu_pct=[100 * r["cpu_s"] / r["wall_s"] for r in reports],
            gen_lag_p99=max(r["lag_p99"] for r in reports),
            gen_lag_max=max(r["lag_max"] for r in reports),
            load=load,
        )
    finally:
        for w in workers:
            if w.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    w.kill()
                await w.wait()
        server.stop()
        if trace is not None:
            print(f"  {name} N={n} collections in the window: {server.gc_report(*window)}", flush=True)
            census = server.census()
            if len(census) == 2:
                before, after = (Counter(dict(c["types"])) for c in census)
                per = ", ".join(f"{t} {v / n:.1f}" for t, v in (after - before).most_common(15))
                print(
                    f"  {name} N={n} tracked objects per idle conversation: "
                    f"{(census[1]['tracked'] - census[0]['tracked']) / n:.0f} ({per})",
                    flush=True,
                )


async def interruptions(url: str, key: str, count: int, per_conversation: int = 20) -> list[float]:
    """Transcript sent while the previous reply streams → the new turn's first chunk (ms)."""
    samples: list[float] = []
    while len(samples) < count:
        async with SpeechEngineClient(url, api_key=key) as client:
            for index in range(per_conversation):
                client.history.append({"role": "user", "content": UTTERANCE})
                client.event_id += 1
                event_id = client.event_id
                started = time.perf_counter()
                await client.send_transcript(event_id)
                while True:
                    frame = await client.receive()
                    assert frame != "closed"
                    if frame.get("type") == "agent_response" and frame.get("event_id") == event_id:
                        break
                if index:  # the first transcript of a conversation interrupts nothing
                    samples.append((time.perf_counter() - started) * 1e3)
                client.heard(frame["content"])
    return samples[:count]


async def measure_interruptions(args: argparse.Namespace, key: str, extra_env: list[str]) -> dict[str, list[float]]:
    servers = [
        start_server("voice-channel", key, args.server_core, extra_env, args.interrupt_delay_ms, 100),
        start_server("sdk", key, args.server_core, [], args.interrupt_delay_ms, 100),
    ]
    try:
        for server in servers:
            await wait_listening(server.port, server.proc)
            await warm_up(server.url, key, 5)
        samples: dict[str, list[float]] = {s.name: [] for s in servers}
        rounds = 10
        for i in range(rounds):  # alternate, so both see the same machine load
            for server in servers if i % 2 == 0 else reversed(servers):
                samples[server.name] += await interruptions(server.url, key, args.interruptions // rounds)
        return samples
    finally:
        for server in servers:
            server.stop()


# --------------------------------------------------------------------------- report


def row(r: Result) -> str:
    return (
        f"{r.name:22} {r.n:5d} {r.turns:6d} {r.lost:4d} {pct(r.first, 50):7.2f} {pct(r.first, 99):7.2f} "
        f"{max(r.first):7.1f} {pct(r.final, 50):7.2f} {r.frames / max(r.turns, 1):6.1f} "
        f"{r.cpu_ms_per_turn:7.3f} {r.server_cpu_pct:5.0f}% {r.kib_per_idle:6.1f}   "
        f"{'/'.join(f'{c:.0f}' for c in r.gen_cpu_pct)}% lag p99 {r.gen_lag_p99:.1f} max {r.gen_lag_max:.0f}  "
        f"load {r.load[0]:.1f}"
    )


def ratios(ours: Result, sdk: Result) -> str:
    return (
        f"  {ours.name} / SDK at N={ours.n}: first p50 {pct(ours.first, 50) / pct(sdk.first, 50):.2f}, "
        f"p99 {pct(ours.first, 99) / pct(sdk.first, 99):.2f}, max {max(ours.first) / max(sdk.first):.2f}, "
        f"CPU/turn {ours.cpu_ms_per_turn / sdk.cpu_ms_per_turn:.2f}, "
        f"KiB/idle {ours.kib_per_idle / sdk.kib_per_idle:.2f}"
    )


async def main(args: argparse.Namespace) -> int:
    os.sched_setaffinity(0, set(args.generator_cores))  # this process and its workers stay off the server core
    key = f"sk_bench_{secrets.token_hex(16)}"
    targets: list[tuple[str, str, list[str]]] = [("voice-channel", "voice-channel", args.ours_env)]
    if args.compare_gc:
        targets = [("voice-channel", "voice-channel", args.ours_env), ("voice-channel", "vc (no GC policy)", [GC_OFF])]
    if not args.no_sdk:
        targets.append(("sdk", "elevenlabs SDK", []))
    print(
        f"server core {args.server_core}, generator cores {args.generator_cores} ({args.generators} processes), "
        f"{args.duration:.0f} s window, one transcript per conversation every {args.period} s ±25 %, "
        f"Python {sys.version.split()[0]}, load average at start {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    results: list[Result] = []
    for rep in range(args.repeat):
        for n in args.conversations:
            order = targets if rep % 2 == 0 else list(reversed(targets))
            for kind, name, env in order:
                result = await measure(kind, name, n, args, key, env)
                print(f"  run {rep + 1}: {row(result)}", flush=True)
                results.append(result)
    header = (
        f"{'':22} {'N':>5} {'turns':>6} {'lost':>4} {'1st p50':>7} {'1st p99':>7} {'1st max':>7} "
        f"{'fin p50':>7} {'fr/trn':>6} {'CPU ms':>7} {'srvCPU':>6} {'KiB/cv':>6}   generator CPU, lag (ms)"
    )
    print(
        "\nfirst chunk and final in ms; server CPU ms per turn and its share of a core over the window; "
        "KiB of RSS per idle conversation"
    )
    print(header)
    for r in results:
        print(row(r))
    for i in range(0, len(results), len(targets)):
        group = results[i : i + len(targets)]
        sdk = next((r for r in group if r.name == "elevenlabs SDK"), None)
        for ours in group:
            if sdk is not None and ours is not sdk:
                print(ratios(ours, sdk))
    if args.interruptions:
        samples = await measure_interruptions(args, key, args.ours_env)
        ours_i, sdk_i = samples["voice-channel"], samples["elevenlabs SDK"]
        print(
            f"\ninterruption → new turn's first chunk ({len(ours_i)} each, quiet server, echo pausing "
            f"{args.interrupt_delay_ms} ms between words), load average {os.getloadavg()[0]:.1f}:"
        )
        for name, s in samples.items():
            print(f"  {name:16} p50 {pct(s, 50):.3f} ms  p99 {pct(s, 99):.3f} ms")
        print(f"  ratio voice-channel / SDK: p50 {pct(ours_i, 50) / pct(sdk_i, 50):.2f}")
    if args.json:
        lines = []
        for r in results:
            summary = {k: v for k, v in r.__dict__.items() if k not in ("first", "final")}
            for q in (50, 99):
                summary[f"first_p{q}"] = pct(r.first, q)
            summary["first_max"] = max(r.first)
            lines.append(json.dumps(summary) + "\n")
        with Path(args.json).open("a") as out:  # noqa: ASYNC230 - after everything is measured
            out.writelines(lines)
    return 0


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, nargs="+", default=[1000, 2000], metavar="N")
    parser.add_argument("--duration", type=float, default=30.0, help="load window per server and N (s)")
    parser.add_argument("--period", type=float, default=2.0, help="seconds between transcripts (jittered)")
    parser.add_argument("--turn-timeout", type=float, default=5.0, help="a turn with no final by then is lost")
    parser.add_argument("--repeat", type=int, default=1, help="repetitions, alternating the server order")
    parser.add_argument("--server-core", type=int, default=0)
    parser.add_argument("--generator-cores", type=int, nargs="+", default=None)
    parser.add_argument("--generators", type=int, default=2, help="load generator processes")
    parser.add_argument("--interruptions", type=int, default=200, help="0 skips the interruption measurement")
    parser.add_argument("--interrupt-delay-ms", type=int, default=20)
    parser.add_argument("--compare-gc", action="store_true", help=f"also measure ours with {GC_OFF}")
    parser.add_argument("--no-sdk", action="store_true", help="measure only ours (experiments)")
    parser.add_argument("--ours-env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--gc-trace", action="store_true", help="time our server's collections (bench/gc_trace.py)")
    parser.add_argument("--gc-threshold", type=int, nargs=3, metavar=("G0", "G1", "G2"), help="with --gc-trace")
    parser.add_argument(
        "--profile", metavar="PREFIX", help="py-spy our server in the window: collapsed stacks to PREFIX-<name>-<N>.txt"
    )
    parser.add_argument("--json", help="append one JSON line per measurement to this file")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generator_cores is None:
        args.generator_cores = [c for c in sorted(os.sched_getaffinity(0)) if c != args.server_core] or [
            args.server_core
        ]
    return args


if __name__ == "__main__":
    arguments = parse()
    raise SystemExit(asyncio.run(worker(arguments) if arguments.worker is not None else main(arguments)))
