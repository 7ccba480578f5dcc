"""Baseline for bench/first_chunk.py: the official SDK's SpeechEngineServer with an echo handler.

It streams exactly the words of voice-channel's ``echo`` runtime (``You said: <text>``, word by
word) through ``session.send_response(async_iterator)``, which is how the SDK documents streaming.
"""

from __future__ import annotations

import argparse
import asyncio

from elevenlabs.speech_engine import SpeechEngineServer


async def on_transcript(transcript, session) -> None:  # type: ignore[no-untyped-def]
    text = next((m.content for m in reversed(transcript) if m.role == "user"), "")
    words = f"You said: {text}".split(" ")

    async def stream():  # type: ignore[no-untyped-def]
        for index, word in enumerate(words):
            yield word if index == len(words) - 1 else f"{word} "

    await session.send_response(stream())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--api-key", required=True)
    args = parser.parse_args()
    server = SpeechEngineServer(port=args.port, path="/ws", api_key=args.api_key, on_transcript=on_transcript)
    asyncio.run(server.serve())


if __name__ == "__main__":
    main()
