"""Latency of the openai and openclaw runtimes through the whole channel (run by hand).

    .venv/bin/python bench/runtime_latency.py [--turns 20] [--skip-openclaw]

For each runtime: a client playing ElevenLabs talks to a real channel server. It measures
transcript → first ``agent_response`` chunk on warm turns (the model answers at once), and
interruption → the model's stream seen closed by the fake model (the runtime stopped the run).
``openai`` talks to the fake model directly; ``openclaw`` goes through a real, isolated OpenClaw
Gateway (tests/adapters/openclaw; needs `make openclaw-gateway`), which adds its own agent work.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "adapters" / "openclaw")]

from aiohttp.test_utils import TestServer  # noqa: E402

from fake_openai import FakeOpenAI, RemoteFake  # noqa: E402
from runtime_support import adapter_settings  # noqa: E402
from voice_channel.app import create_app  # noqa: E402
from voice_channel.elevenlabs.client import SpeechEngineClient  # noqa: E402
from voice_channel.plugins import get_plugin_manager  # noqa: E402

API_KEY = "sk_bench_0123456789abcdef"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def report(name: str, values: list[float]) -> None:
    print(
        f"  {name:<34} n={len(values):<3} p50={statistics.median(values):7.1f} ms"
        f"  p95={pct(values, 0.95):7.1f} ms  max={max(values):7.1f} ms"
    )


async def channel(plugin: Any, runtime: str, section: dict[str, Any]) -> tuple[TestServer, str]:
    settings = adapter_settings(
        [plugin], runtime=runtime, elevenlabs={"api_key": API_KEY}, log_level="warning", **{runtime: section}
    )
    pm = get_plugin_manager(load_entrypoints=False, extra_plugins=[plugin])
    server = TestServer(create_app(settings, pm), host="127.0.0.1")
    await server.start_server()
    return server, str(server.make_url("/ws")).replace("http://", "ws://")


async def first_chunks(url: str, turns: int) -> list[float]:
    samples = []
    async with SpeechEngineClient(url, api_key=API_KEY) as client:
        for index in range(turns + 1):
            started = time.perf_counter()
            await client.say(f"hello number {index}")
            first = None
            while True:
                frame = await client.receive(timeout=60)
                if frame.get("type") != "agent_response" or frame.get("event_id") != client.event_id:
                    continue
                if first is None and frame.get("content"):
                    first = (time.perf_counter() - started) * 1000
                if frame.get("is_final"):
                    break
            client.heard("Hello from the fake model.")
            if index:  # the first turn is cold
                samples.append(first or float("nan"))
    return samples


async def interruptions(url: str, fake: Any, turns: int) -> list[float]:
    samples = []
    for _ in range(turns):
        async with SpeechEngineClient(url, api_key=API_KEY) as client:
            await client.say("tell me something slow")
            while not (await client.receive(timeout=60)).get("content", "").startswith("tok"):
                pass
            before = len([c for c in await calls(fake) if c_closed(c)])
            started = time.perf_counter()
            await client.say("hello instead")
            await fake.wait_for(lambda cs, n=before: len([c for c in normalise(cs) if c_closed(c)]) > n)
            samples.append((time.perf_counter() - started) * 1000)
            await client.reply(timeout=60)
    return samples


def normalise(items: list[Any]) -> list[dict[str, Any]]:
    return [item if isinstance(item, dict) else item.__dict__ for item in items]


def c_closed(call: dict[str, Any]) -> bool:
    return bool(call["closed_early"])


async def calls(fake: Any) -> list[dict[str, Any]]:
    return normalise(await fake.sync() if isinstance(fake, RemoteFake) else fake.calls)


async def bench_openai(turns: int) -> None:
    import voice_channel_openai.plugin as plugin

    fake = FakeOpenAI()
    fake_server = TestServer(fake.app(), host="127.0.0.1")
    await fake_server.start_server()
    server, url = await channel(plugin, "openai", {"base_url": str(fake_server.make_url("/v1")), "model": "m"})
    try:
        print("openai runtime (fake model in-process):")
        report("transcript -> first chunk", await first_chunks(url, turns))
        report("interruption -> model stream closed", await interruptions(url, fake, max(3, turns // 4)))
    finally:
        await server.close()
        await fake_server.close()


async def bench_openclaw(turns: int) -> None:
    import openclaw_sandbox
    from openclaw_sandbox import start_gateway

    import voice_channel_openclaw.plugin as plugin
    from processes import stop_process

    if not openclaw_sandbox.is_installed():
        print("openclaw runtime: skipped (run `make openclaw-gateway`)")
        return
    started = time.perf_counter()
    running = await asyncio.to_thread(start_gateway, Path(tempfile.mkdtemp(prefix="bench-openclaw-")))
    ready_s = time.perf_counter() - started
    section = {
        "gateway_url": running.sandbox.url,
        "token": running.sandbox.token,
        "device_key_path": str(running.sandbox.root / "bench-device.json"),
    }
    server, url = await channel(plugin, "openclaw", section)
    try:
        print(f"openclaw runtime (real Gateway 2026.9.6, ready in {ready_s:.1f} s; fake model):")
        report("transcript -> first chunk", await first_chunks(url, turns))
        report("interruption -> model stream closed", await interruptions(url, running.fake, max(3, turns // 4)))
    finally:
        await server.close()
        await asyncio.to_thread(running.sandbox.stop)
        stop_process(running.fake_process)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--skip-openclaw", action="store_true")
    args = parser.parse_args()
    await bench_openai(args.turns)
    if not args.skip_openclaw:
        await bench_openclaw(args.turns)


if __name__ == "__main__":
    asyncio.run(main())
