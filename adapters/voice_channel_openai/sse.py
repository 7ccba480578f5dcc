"""Server-sent events, as the WHATWG spec defines them, read from an aiohttp response body.

OpenAI-compatible servers send ``data: {json}`` events and a final ``data: [DONE]``; some add
comments (``: keepalive``) or named events (Hermes: ``event: hermes.tool.progress``). Lines end in
``\\n`` or ``\\r\\n`` (a lone ``\\r`` is not treated as a line end); an event ends at a blank line.
"""

from __future__ import annotations

import codecs
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

__all__ = ["ServerSentEvent", "iter_events"]


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    data: str
    event: str = "message"


async def iter_events(chunks: AsyncIterable[bytes]) -> AsyncIterator[ServerSentEvent]:
    """Parse a byte stream into events (the stream may split lines anywhere)."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")  # a character may span chunks
    buffer = ""
    data: list[str] = []
    event = ""
    async for chunk in chunks:
        buffer += decoder.decode(chunk)
        lines = buffer.split("\n")
        buffer = lines.pop()  # an incomplete last line waits for more bytes
        for line in lines:
            line = line.removesuffix("\r")
            if not line:
                if data:
                    yield ServerSentEvent("\n".join(data), event or "message")
                data, event = [], ""
                continue
            if line.startswith(":"):
                continue  # comment (keep-alive)
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                data.append(value)
            elif name == "event":
                event = value
    buffer += decoder.decode(b"", final=True)
    if buffer.strip():
        name, _, value = buffer.removesuffix("\r").partition(":")
        if name == "data":
            data.append(value.removeprefix(" "))
    if data:
        yield ServerSentEvent("\n".join(data), event or "message")
