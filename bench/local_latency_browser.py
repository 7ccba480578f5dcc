"""Latency through the real page in headless Chromium: the fake microphone plays N utterances, the engine measures.

The channel runs in local mode with the page, the local engine next to it, all in this process; Chromium (Debian
``chromium``, driven by Playwright) opens the page and presses Start; its fake microphone plays a WAV of piper
utterances, each followed by a silence long enough for the reply. Figures are the engine's (seconds from the
arrival of the last frame its VAD called voiced; the WebRTC VAD's hangover makes that 0.1-0.2 s later than the
acoustic end, see ``bench/local_latency.py`` for the client-side measure).

Run: ``.venv/bin/python bench/local_latency_browser.py --turns 20``.
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
import wave
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "plugin"))

from aiohttp.test_utils import TestServer  # noqa: E402

from voice_channel.app import create_app  # noqa: E402
from voice_channel.local_engine.app import ENGINE, create_engine_app  # noqa: E402
from voice_channel.local_engine.config import LocalEngineConfig  # noqa: E402
from voice_channel.local_engine.local_mode import channel_overrides  # noqa: E402
from voice_channel.local_engine.probe import SpeechMaker  # noqa: E402
from voice_channel.plugins import get_plugin_manager  # noqa: E402
from voice_channel.settings import Settings  # noqa: E402

SCRIPT = ["Please add milk to my list.", "What is on my list?", "Add eggs to my list.", "What is on my list?"]
CHROMIUM = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")


def summary(values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return f"median {statistics.median(values):.3f}  min {ordered[0]:.3f}  p90 {p90:.3f}  max {ordered[-1]:.3f}"


async def run(turns: int, gap_s: float, screenshot: str | None = None) -> None:
    import structlog
    from playwright.async_api import async_playwright

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    key = f"sk_bench_{secrets.token_hex(8)}"
    engine = TestServer(create_engine_app(LocalEngineConfig(channel_url="ws://127.0.0.1:9/x", api_key=key)))
    await engine.start_server()
    state = engine.app[ENGINE]
    overrides = channel_overrides(str(engine.make_url("")).rstrip("/"))
    overrides["elevenlabs"]["api_key"] = key
    overrides["token"]["allow_anonymous"] = True
    settings = Settings(runtime="demo", ui={"enabled": True}, log_level="error", **overrides)
    channel = TestServer(create_app(settings, get_plugin_manager(load_entrypoints=False)), host="127.0.0.1")
    await channel.start_server()
    state.config = state.config.model_copy(
        update={"channel_url": str(channel.make_url("/ws")).replace("http://", "ws://")}
    )
    speak = SpeechMaker("piper")
    workdir = Path(tempfile.mkdtemp(prefix="voice-channel-bench-"))
    wav = workdir / "turns.wav"
    with wave.open(str(wav), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(bytes(2 * 16000 * 2))
        for index in range(turns):
            out.writeframes(speak(SCRIPT[index % len(SCRIPT)]))
            out.writeframes(bytes(int(gap_s * 16000) * 2))
    flags = [
        "--no-sandbox",
        "--disable-gpu",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}%noloop",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
    ]
    try:
        async with async_playwright() as playwright:
            context = await playwright.chromium.launch_persistent_context(
                str(workdir / "profile"), executable_path=CHROMIUM, headless=True, args=flags
            )
            page = context.pages[0] if context.pages else await context.new_page()
            await page.goto(str(channel.make_url("/")))
            await page.click("#start")
            from playwright.async_api import expect

            await expect(page.locator("#transcript li")).to_have_count(2 * turns, timeout=int(turns * 15_000))
            async with asyncio.timeout(30):
                while len(state.metrics) < turns:
                    state.metrics_changed.clear()
                    await state.metrics_changed.wait()
            lines = await page.eval_on_selector_all("#transcript li", "items => items.map(li => li.textContent)")
            if screenshot:
                await page.screenshot(path=screenshot, full_page=True)
            await page.click("#stop")
            await context.close()
    finally:
        await channel.close()
        await engine.close()
        shutil.rmtree(workdir, ignore_errors=True)
    metrics = [m for m in state.metrics if m.first_audio_s is not None]
    exact = sum(
        m.transcript.lower().strip(" .?!") == SCRIPT[i % len(SCRIPT)].lower().strip(" .?!")
        for i, m in enumerate(metrics)
    )
    print(f"{len(metrics)} turns through Chromium, {exact} transcripts exact; load average {os.getloadavg()[0]:.2f}")
    for name in ("end_of_turn_s", "stt_s", "transcript_s", "first_text_s", "tts_first_s", "first_audio_s"):
        values = [getattr(m, name) for m in metrics if getattr(m, name) is not None]
        print(f"  {name:14s} {summary(values)}")
    print(f"  interrupted turns: {sum(m.interrupted for m in state.metrics)}; page lines: {len(lines)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--gap-s", type=float, default=4.5)
    parser.add_argument("--screenshot", default=None, help="Save a picture of the page at the end (PNG).")
    args = parser.parse_args()
    asyncio.run(run(args.turns, args.gap_s, args.screenshot))


if __name__ == "__main__":
    main()
