"""Server-sent events, as the WHATWG spec defines them, read from an aiohttp response body.

OpenAI-compatible servers send ``data: {json}`` events and a final ``data: [DONE]``; some add
comments (``: keepalive``) or named events (Hermes: ``event: hermes.tool.progress``). Lines end in
``\\n`` or ``\\r\\n`` (a lone ``\\r`` is not treated as a line end); an event ends at a blank line.
"""

from __future__ import annotations

import codecs
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

__all__ = ["MAX_LINE_CHARS", "ServerSentEvent", "StreamLineTooLong", "iter_events"]

#: The longest line accepted (a whole tool call's arguments may come in one ``data:`` line): a server that
#: sends more without a line end is broken, and holding it all would cost unbounded memory.
MAX_LINE_CHARS = 4 * 1024 * 1024


class StreamLineTooLong(ValueError):
    """A line longer than :data:`MAX_LINE_CHARS`."""


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    data: str
    event: str = "message"


async def iter_events(chunks: AsyncIterable[bytes], max_line: int = MAX_LINE_CHARS) -> AsyncIterator[ServerSentEvent]:
    """Parse a byte stream into events (the stream may split lines anywhere).

    Linear in the stream's length: an incomplete line is kept as pieces, joined once its end arrives
    (re-splitting the whole buffer on every read was quadratic in a long line, on the event loop).

    :raises StreamLineTooLong: a line grew past ``max_line`` characters.
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")  # a character may span chunks
    partial: list[str] = []  # the pieces of the current, incomplete line
    partial_size = 0
    data: list[str] = []
    event = ""
    async for chunk in chunks:
        text = decoder.decode(chunk)
        if "\n" not in text:
            partial.append(text)
            partial_size += len(text)
            if partial_size > max_line:
                raise StreamLineTooLong(f"a line of over {max_line} characters")
            continue
        lines = text.split("\n")
        if partial:
            lines[0] = "".join(partial) + lines[0]
        tail = lines.pop()  # an incomplete last line waits for more bytes
        partial, partial_size = ([tail], len(tail)) if tail else ([], 0)
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
    rest = "".join(partial) + decoder.decode(b"", final=True)
    if rest.strip():
        name, _, value = rest.removesuffix("\r").partition(":")
        if name == "data":
            data.append(value.removeprefix(" "))
    if data:
        yield ServerSentEvent("\n".join(data), event or "message")
