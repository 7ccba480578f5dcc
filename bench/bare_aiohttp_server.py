"""Floor for bench/first_chunk.py: a bare aiohttp WebSocket server with the SDK echo's behaviour.

No JWT check, no schema, no trust boundary, no turn engine, no logging: read a frame with
``json.loads``; for a ``user_transcript``, send ``You said: <last user text>`` word by word as
``agent_response`` frames, then an empty final, exactly as ``bench/sdk_echo_server.py`` does
through the SDK. What it measures is what aiohttp itself costs per turn, the part of our
first-chunk latency no change to voice-channel can remove (the product is built on aiohttp).
"""

from __future__ import annotations

import argparse
import json

from aiohttp import WSMsgType, web


async def handler(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(autoping=True, compress=False)
    await ws.prepare(request)
    async for msg in ws:
        if msg.type is WSMsgType.TEXT:
            # In a function of its own: nothing of the turn (the parsed history, the words) stays
            # referenced while the next frame is awaited, so bench/idle_census.py --bare sees the floor.
            await answer(ws, msg.data)
    return ws


async def answer(ws: web.WebSocketResponse, data: str) -> None:
    frame = json.loads(data)
    if frame.get("type") != "user_transcript":
        return
    event_id = frame.get("event_id")
    text = next((m["content"] for m in reversed(frame["user_transcript"]) if m["role"] == "user"), "")
    words = f"You said: {text}".split(" ")
    for index, word in enumerate(words):
        content = word if index == len(words) - 1 else f"{word} "
        await ws.send_str(
            json.dumps({"type": "agent_response", "content": content, "event_id": event_id, "is_final": False})
        )
    await ws.send_str(json.dumps({"type": "agent_response", "content": "", "event_id": event_id, "is_final": True}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--api-key", default="", help="ignored (the handshake is not checked)")
    args = parser.parse_args()
    app = web.Application()
    app.router.add_get("/ws", handler)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
