"""Phrase chunking: coalesce streamed text into few, speakable frames.

ElevenLabs concatenates the ``content`` of the chunks of one turn into its text-to-speech stream,
so a chunk boundary may fall anywhere, even inside a word. Chunking is therefore only about frame
count and latency: the first text of a turn leaves at once (nothing is gained by holding the
first words), later text is coalesced up to a clause or sentence boundary, a size cap, or a
stall of the runtime (flushed by a timer owned by the turn). A long reply becomes tens of
frames instead of thousands, which keeps the socket free for the next turn's first chunk.
"""

from __future__ import annotations

import re

__all__ = ["PhraseChunker"]

# A clause or sentence ends at punctuation followed by whitespace (Latin's, and Arabic's ، ؛ ؟, Urdu's ۔,
# the Devanagari dandas । ॥), at the ideographic and full-width punctuation Chinese and Japanese write with
# no space after it (、 。 ！ ， ： ； ？ ｡), or at a line break.
_BOUNDARY = re.compile(
    r"[.!?;:,\u2026\u060c\u061b\u061f\u06d4\u0964\u0965](?=\s)|[\u3001\u3002\uff01\uff0c\uff1a\uff1b\uff1f\uff61]|\n"
)


class PhraseChunker:
    """Stateful chunker for one turn."""

    __slots__ = ("_buf", "_max_chars", "_scan_from", "_sent_any")

    def __init__(self, max_chars: int = 200) -> None:
        self._buf = ""
        #: Where the boundary search starts: the held text before it holds no boundary (only its
        #: last character may be punctuation still waiting for the whitespace that completes one).
        self._scan_from = 0
        self._max_chars = max_chars
        self._sent_any = False

    @property
    def pending(self) -> bool:
        """Whether text is held back, waiting for a boundary or a flush. Whitespace alone is not: it is
        what follows every boundary, kept only for the words after it, and no flush sends it."""
        return bool(self._buf) and not self._buf.isspace()

    def feed(self, text: str) -> str | None:
        """Add ``text``; return a chunk to send now, or ``None`` to hold it."""
        if not text:
            return None
        buf = self._buf + text
        if not self._sent_any:
            return self._take(buf, len(buf))
        cut = _last_boundary_end(buf, self._scan_from)
        if cut == 0 and len(buf) >= self._max_chars:
            cut = buf.rfind(" ") + 1 or len(buf)
        if cut == 0:
            self._buf = buf
            self._scan_from = max(len(buf) - 1, 0)
            return None
        return self._take(buf, cut)

    def flush(self) -> str | None:
        """Return everything held (on a runtime stall or at the end of the reply).

        Held whitespace alone is kept back: it is only worth sending before more text.
        """
        if not self._buf:
            return None
        return self._take(self._buf, len(self._buf))

    def _take(self, buf: str, cut: int) -> str | None:
        chunk, self._buf = buf[:cut], buf[cut:]
        # What follows the last boundary holds none (a cut at a space happens only without any).
        self._scan_from = max(len(self._buf) - 1, 0)
        if not chunk.strip():
            # Whitespace alone is not worth a frame; keep it so spacing is preserved. (A line
            # break in it is a boundary: search the whole buffer again.)
            self._buf = chunk + self._buf
            self._scan_from = 0
            return None
        self._sent_any = True
        return chunk


def _last_boundary_end(buf: str, start: int = 0) -> int:
    """End of the last boundary in ``buf[start:]`` (0 if none): only the text fed since the last
    search is scanned, not the whole held buffer again."""
    end = 0
    for match in _BOUNDARY.finditer(buf, start):
        end = match.end()
    return end
