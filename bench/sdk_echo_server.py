"""Baseline for bench/first_chunk.py and bench/scale.py: the official SDK's SpeechEngineServer with an echo handler.

It streams exactly the words of voice-channel's ``echo`` runtime (``You said: <text>``, word by
word) through ``session.send_response(async_iterator)``, which is how the SDK documents streaming.
``--delay-ms`` pauses between words, as ``echo.delay_ms`` does for ours (to keep a reply in flight
long enough to be interrupted).
"""

from __future__ import annotations

import argparse
import asyncio

from elevenlabs.speech_engine import SpeechEngineServer


def make_handler(delay_s: float):  # type: ignore[no-untyped-def]
    async def on_transcript(transcript, session) -> None:  # type: ignore[no-untyped-def]
        text = next((m.content for m in reversed(transcript) if m.role == "user"), "")
        words = f"You said: {text}".split(" ")

        async def stream():  # type: ignore[no-untyped-def]
            for index, word in enumerate(words):
                if index and delay_s:
                    await asyncio.sleep(delay_s)
                yield word if index == len(words) - 1 else f"{word} "

        await session.send_response(stream())

    return on_transcript


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--delay-ms", type=int, default=0, help="pause between echoed words")
    args = parser.parse_args()
    server = SpeechEngineServer(
        port=args.port, path="/ws", api_key=args.api_key, on_transcript=make_handler(args.delay_ms / 1000)
    )
    asyncio.run(server.serve())


if __name__ == "__main__":
    main()
