"""End of speech → first reply audio, through the local engine, over real speech.

The channel (demo runtime) and the local engine run in this process; a browser stand-in streams
piper speech in real time over the ``@elevenlabs/client`` WebSocket protocol and listens to each
reply before speaking again. Per turn it reports, from the moment the last voiced sample of the
utterance was *sent by the client* (what a caller experiences):

* the client receiving the transcript, the reply text and the first audio frame;
* the engine's own split (end-of-turn decision, Whisper, first text, piper's first sentence).

Run: ``make bench-local`` or ``.venv/bin/python bench/local_latency.py --turns 24 [--stt-window-s 10]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "plugin"))

from aiohttp.test_utils import TestServer  # noqa: E402

from voice_channel.app import create_app  # noqa: E402
from voice_channel.local_engine.app import ENGINE, create_engine_app  # noqa: E402
from voice_channel.local_engine.config import LocalEngineConfig  # noqa: E402
from voice_channel.local_engine.probe import ConvaiProbe, SpeechMaker  # noqa: E402
from voice_channel.plugins import get_plugin_manager  # noqa: E402
from voice_channel.settings import Settings  # noqa: E402

SCRIPT = [
    "Please add milk to my list.",
    "What is on my list?",
    "Add eggs to my list.",
    "What is on my list?",
    "Please add bread to my list.",
    "What is on my list?",
]


def summary(values: list[float]) -> str:
    if not values:
        return "n/a"
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return f"median {statistics.median(values):.3f}  min {ordered[0]:.3f}  p90 {p90:.3f}  max {ordered[-1]:.3f}"


async def run(turns: int, options: dict[str, object]) -> int:
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    key = f"sk_bench_{secrets.token_hex(8)}"
    settings = Settings(runtime="demo", elevenlabs={"api_key": key}, log_level="error")
    channel = TestServer(create_app(settings, get_plugin_manager(load_entrypoints=False)), host="127.0.0.1")
    await channel.start_server()
    url = str(channel.make_url("/ws")).replace("http://", "ws://")
    config = LocalEngineConfig(channel_url=url, api_key=key, **options)  # type: ignore[arg-type]
    engine = TestServer(create_engine_app(config), host="127.0.0.1")
    await engine.start_server()
    state = engine.app[ENGINE]
    print(f"models: {state.models.timings}  tts={state.models.synthesizer.engine}  options={options}")  # type: ignore[union-attr]
    speak = SpeechMaker("piper")
    clips = {text: speak(text) for text in SCRIPT}
    client_rows: list[dict[str, float]] = []
    wrong = 0
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with session.get(
            engine.make_url("/v1/convai/conversation/get-signed-url"),
            params={"agent_id": "bench"},
            headers={"xi-api-key": key},
        ) as response:
            signed = (await response.json())["signed_url"]
    conversation_turns = 0
    browser = ConvaiProbe(signed)
    await browser.connect()
    try:
        for index in range(turns):
            if conversation_turns == len(SCRIPT):  # a fresh conversation (and list) every script
                await browser.aclose()
                async with aiohttp.ClientSession() as session:
                    async with session.get(
                        engine.make_url("/v1/convai/conversation/get-signed-url"),
                        params={"agent_id": "bench"},
                        headers={"xi-api-key": key},
                    ) as response:
                        signed = (await response.json())["signed_url"]
                browser = ConvaiProbe(signed)
                await browser.connect()
                conversation_turns = 0
            text = SCRIPT[conversation_turns]
            conversation_turns += 1
            start = len(browser.received)
            utterance = browser.say(clips[text])
            heard = await browser.wait_type("user_transcript", after=start)
            event_id = heard.event()["event_id"]
            reply = await browser.wait_type("agent_response", after=start, event_id=event_id)
            audio = await browser.wait_type("audio", after=start, event_id=event_id)
            end = utterance.speech_end
            assert end is not None
            row = {
                "transcript": heard.at - end,
                "reply_text": reply.at - end,
                "first_audio": audio.at - end,
            }
            client_rows.append(row)
            said = heard.event()["user_transcript"]
            ok = said.lower().strip(" .?!") == text.lower().strip(" .?!")
            wrong += not ok
            print(
                f"turn {index + 1:2d}  first audio {row['first_audio']:.3f}s  transcript {row['transcript']:.3f}s"
                f"  {'ok ' if ok else 'ERR'} {said!r} -> {reply.event()['agent_response']!r}"
            )
            await browser.listen(after=start)
            await asyncio.sleep(0.5)  # a caller's pause before speaking again
    finally:
        await browser.aclose()
        await engine.close()
        await channel.close()
    engine_rows = [m for m in state.metrics if m.first_audio_s is not None]
    print(f"\n{len(client_rows)} turns, {wrong} transcripts not exact; load average {os.getloadavg()[0]:.2f}")
    print("client-side, seconds from the end of speech (last voiced sample sent):")
    for key_name in ("transcript", "reply_text", "first_audio"):
        print(f"  {key_name:12s} {summary([row[key_name] for row in client_rows])}")
    print("engine-side (from the arrival of the last voiced frame):")
    for name in ("end_of_turn_s", "stt_s", "transcript_s", "first_text_s", "tts_first_s", "first_audio_s"):
        print(f"  {name:14s} {summary([getattr(m, name) for m in engine_rows if getattr(m, name) is not None])}")
    speculative = sum(m.speculative for m in engine_rows)
    print(f"  speculative transcription used in {speculative}/{len(engine_rows)} turns")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=24)
    parser.add_argument("--stt-window-s", type=float, default=None)
    parser.add_argument("--end-of-turn-ms", type=int, default=None)
    parser.add_argument("--speculate-ms", type=int, default=None)
    parser.add_argument("--vad", choices=["webrtc", "silero"], default=None)
    args = parser.parse_args()
    options = {
        name: value
        for name, value in {
            "stt_window_s": args.stt_window_s,
            "end_of_turn_ms": args.end_of_turn_ms,
            "speculate_ms": args.speculate_ms,
            "vad": args.vad,
        }.items()
        if value is not None
    }
    started = time.perf_counter()
    code = asyncio.run(run(args.turns, options))
    print(f"wall time {time.perf_counter() - started:.1f}s")
    sys.exit(code)


if __name__ == "__main__":
    main()
