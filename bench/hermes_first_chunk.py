"""Transcript → first chunk through Hermes Agent, and what the voice channel adds on top of Hermes.

Runs Hermes's real gateway in this process (fresh ``HERMES_HOME``, the plugin enabled with
``hermes plugins enable``), a fake OpenAI-compatible LLM on 127.0.0.1 that answers at once (no
token pacing), and a client playing ElevenLabs over a real WebSocket. Per turn it records, on one
monotonic clock:

* ``t0``: the client sends the ``user_transcript``;
* ``submit``: the channel hands the message to Hermes (``handle_message``);
* ``hermes``: Hermes delivers its first text to the adapter (first draft or send): *Hermes's own
  first delta*;
* ``first``: the client receives the first ``agent_response`` chunk.

``submit - t0`` and ``first - hermes`` are the channel's part; ``hermes - submit`` is Hermes's (agent
loop, LLM request, stream consumer). The first turn of each conversation starts a new Hermes session
and is reported apart from the later ones; the very first call after the gateway started (the first
turn of the first conversation, made as soon as ``/readyz`` says ready) is reported on its own line.

Run: ``make bench-hermes`` or ``.venv/bin/python bench/hermes_first_chunk.py --conversations 5 --turns 10``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from hermes_support import PLATFORM, FakeLLM, hermes_config, prepare_hermes_home  # noqa: E402

UTTERANCE = "please add two liters of milk and a loaf of bread to my shopping list"


class Probe:
    """Timestamps from inside the adapter, by chat."""

    def __init__(self, adapter: Any) -> None:
        self.submitted: dict[str, float] = {}
        self.first_delivery: dict[str, float] = {}
        self._wrap(adapter)

    def _wrap(self, adapter: Any) -> None:
        submit, draft, send = adapter.submit, adapter.send_draft, adapter.send

        async def timed_submit(chat: Any, text: str, message_id: str) -> None:
            self.submitted[message_id] = time.monotonic()
            self.first_delivery.pop(chat.chat_id, None)
            await submit(chat, text, message_id)

        async def timed_draft(chat_id: str, *args: Any, **kwargs: Any) -> Any:
            self.first_delivery.setdefault(str(chat_id), time.monotonic())
            return await draft(chat_id, *args, **kwargs)

        async def timed_send(chat_id: str, content: str, reply_to: str | None = None, metadata: Any = None) -> Any:
            if metadata and reply_to:  # content, not a gateway notice
                self.first_delivery.setdefault(str(chat_id), time.monotonic())
            return await send(chat_id, content, reply_to=reply_to, metadata=metadata)

        adapter.submit, adapter.send_draft, adapter.send = timed_submit, timed_draft, timed_send


async def wait_ready(url: str, timeout: float = 120.0) -> None:
    """Poll the channel's readiness probe until it says ok (what a load balancer does)."""
    import aiohttp

    loop = asyncio.get_running_loop()
    deadline, delay = loop.time() + timeout, 0.02
    async with aiohttp.ClientSession() as http:
        while True:
            async with http.get(url) as response:
                if response.status == 200:
                    return
            if loop.time() > deadline:
                raise TimeoutError(f"{url} not ready after {timeout}s")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.2)


def pct(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


async def run(args: argparse.Namespace) -> int:
    api_key = f"sk_bench_{secrets.token_hex(16)}"
    home = Path(tempfile.mkdtemp(prefix="voice-channel-hermes-bench-"))
    llm = FakeLLM(token_delay=0.0).start()
    prepare_hermes_home(
        home,
        hermes_config(
            llm.base_url,
            # No filler phrase: the first chunk is then always Hermes's text, not "One moment.".
            extra={
                "server": {"host": "127.0.0.1", "port": 0},
                "log_level": "warning",
                "turn": {"filler_enabled": False},
            },
        ),
        api_key,
    )
    import logging

    logging.disable(logging.WARNING)
    from gateway.config import Platform, load_gateway_config
    from gateway.run import GatewayRunner
    from hermes_cli import plugins as hermes_plugins

    from voice_channel.elevenlabs.client import SpeechEngineClient

    hermes_plugins.discover_plugins(force=True)
    runner = GatewayRunner(load_gateway_config())
    assert await runner.start()
    adapter = runner.adapters[Platform(PLATFORM)]
    probe = Probe(adapter)
    url = f"ws://127.0.0.1:{adapter.port}/ws"
    await wait_ready(f"http://127.0.0.1:{adapter.port}/readyz")
    rows: dict[str, list[tuple[float, float, float, float, float]]] = {
        "first call": [],
        "first turn": [],
        "later turns": [],
    }
    try:
        for conversation in range(args.conversations):
            async with SpeechEngineClient(url, api_key=api_key) as client:
                for turn in range(args.turns):
                    requests_before = len(llm.streams)
                    t0 = time.monotonic()
                    await client.say(f"{UTTERANCE} {turn}")
                    first = None
                    async for frame in client.frames(timeout=60):
                        if frame.get("type") != "agent_response":
                            continue
                        if first is None and frame.get("content"):
                            first = time.monotonic()
                        if frame.get("is_final"):
                            break
                    message_id = max(probe.submitted, key=probe.submitted.get)
                    submit = probe.submitted[message_id]
                    hermes = probe.first_delivery[message_id.split(":", 1)[0]]
                    llm_request = next(s for s in llm.streams[requests_before:] if s.kind == "text").t_request
                    assert first is not None
                    key = "later turns" if turn else "first turn" if conversation else "first call"
                    rows[key].append((first - t0, submit - t0, hermes - submit, first - hermes, llm_request - submit))
    finally:
        await runner.stop()
        llm.stop()
        shutil.rmtree(home, ignore_errors=True)

    print(
        f"Hermes Agent gateway in-process, fake LLM answering at once; {args.conversations} conversations x "
        f"{args.turns} turns; Python {sys.version.split()[0]}, {os.cpu_count()} CPUs"
    )
    header = (
        "transcript->first chunk",
        "channel in",
        "Hermes",
        "channel out",
        "channel total",
        "(Hermes->LLM request)",
    )
    print(f"{'':12} {'':4}" + "".join(f"{h:>24}" for h in header) + "   (ms)")
    for label, data in rows.items():
        if not data:
            continue
        for q in (50, 90):
            cols = [
                pct([r[0] for r in data], q),
                pct([r[1] for r in data], q),
                pct([r[2] for r in data], q),
                pct([r[3] for r in data], q),
                pct([r[1] + r[3] for r in data], q),
                pct([r[4] for r in data], q),
            ]
            if len(data) == 1 and q == 90:
                continue
            print(f"{label:12} p{q:<3}" + "".join(f"{c * 1000:24.1f}" for c in cols))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=5)
    parser.add_argument("--turns", type=int, default=10, help="turns per conversation (the first is reported apart)")
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
