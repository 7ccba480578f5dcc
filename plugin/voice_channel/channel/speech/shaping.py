"""Streaming speech shaping: turn chat-style model output into text worth speaking.

Models answer in markdown. Read aloud, ``**bold**``, bullets, code blocks and URLs are noise or
worse (a TTS engine spells a URL out). :class:`SpeechShaper` rewrites the stream as it flows:

* fenced code blocks and ``<think>`` blocks are dropped;
* headings, quote markers, bullets, table rules and horizontal rules lose their markup;
* emphasis markers and inline-code backticks are removed, the words kept;
* ``[text](url)`` and ``![alt](url)`` become ``text``/``alt``; a bare URL becomes its host name;
* HTML and SSML tags are removed; anything else in angle brackets is a placeholder (``<your-api-key>``) and
  keeps its words; line breaks become sentence breaks.

It is streaming-safe: a tail that may still turn into a construct (``[lin``, ``**``, ``htt``)
is held back until it is decided, and plain words pass through at once, so the first words of a
reply are never delayed.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

__all__ = ["SpeechShaper", "shape_text"]

# Characters that start or end a markdown/HTML construct; their presence forces the slow path.
_SPECIAL = re.compile(r"[`\[\]()<>|*_#~\n]|https?:|www\.", re.IGNORECASE)
# A trailing word containing these (or a URL starting with www.) may be an unfinished construct and
# is held back.
_HOLD_CHARS = re.compile(r"[`\[\]()<|*_#~]|://|^www\.", re.IGNORECASE)
# A trailing word made only of these may be a line marker (bullet, quote) or an image's "!".
_MARKER_WORD = re.compile(r"[-+>!]+")
_URL_PREFIXES = ("https://", "http://", "www.")
#: How far an unclosed construct may be held before it is released as plain text.
_MAX_HOLD = {"[": 300, "`": 200, "<": 60}

_FENCE = re.compile(r"^\s{0,3}(```|~~~)")
_HEADING = re.compile(r"^\s{0,3}#{1,6}(\s+|$)")
_QUOTE = re.compile(r"^\s{0,3}(>\s?)+")
_BULLET = re.compile(r"^\s*[-*+]\s+")
_RULE = re.compile(r"^\s*(?:[-*_]\s*){3,}$|^\s*\|?(\s*:?-{3,}:?\s*\|)+\s*:?-*:?\s*$")
_TABLE_ROW = re.compile(r"^\s*\|(.*?)\|?\s*$")

_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_AUTOLINK = re.compile(r"<(https?://[^>\s]+)>", re.IGNORECASE)
_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>()\[\]]+", re.IGNORECASE)
_TAG = re.compile(r"</?([A-Za-z][A-Za-z0-9-]*)(\s[^<>]*)?/?>")
#: The tags removed: HTML's (those a model writes in prose) and SSML's. Other names in angle brackets are
#: placeholders whose words the caller must hear ("replace <your-api-key>", "cd <project-dir>").
_TAG_NAMES = frozenset(
    "a abbr b blockquote br cite code del details div em font h1 h2 h3 h4 h5 h6 hr i img ins kbd li mark ol p pre q"
    " s small span strong sub summary sup table tbody td th thead tr u ul"
    " speak break prosody emphasis say-as phoneme voice audio lang".split()
)
_THINK_OPEN = re.compile(r"<think>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</think>", re.IGNORECASE)
_STRONG = re.compile(r"\*\*|__|~~")
_EMPHASIS = re.compile(r"(?<![\w*])[*_](?=[^\s*_])|(?<=[^\s*_])[*_](?![\w*])")
_TRAILING_PUNCT = ".,;:!?)]\"'"
#: A phrase's end, in the scripts the chunker knows (see chunking._BOUNDARY): a line break after one adds no stop.
_PHRASE_END = frozenset(
    ".!?;:,\u2026\u060c\u061b\u061f\u06d4\u0964\u0965\u3001\u3002\uff01\uff0c\uff1a\uff1b\uff1f\uff61"
)


#: A tag's attributes: each ``name=value``, or one of the boolean attributes prose uses (``<details open>``).
_ATTRIBUTES = re.compile(
    r"""(?:\s+(?:[A-Za-z_:][\w:.-]*\s*=\s*(?:"[^"]*"|'[^']*'|[^\s"'=<>`]+)"""
    r"|open|hidden|controls|autoplay|loop|muted|reversed))*\s*/?",
    re.IGNORECASE,
)


def _untag(match: re.Match[str]) -> str:
    if match.group(1).lower() in _TAG_NAMES:
        attributes = match.group(2)
        if attributes is None or _ATTRIBUTES.fullmatch(attributes):
            return ""
        # A tag's name, but no tag: comparisons ("if a<b and c>d"), spoken as written.
        return match.group(0)
    return match.group(0)[1:-1].strip("/ ")  # a placeholder: its words, without the brackets


def _host(url: str) -> str:
    candidate = url if "://" in url else f"http://{url}"
    try:
        host = urlsplit(candidate.rstrip(_TRAILING_PUNCT)).hostname or ""
    except ValueError:
        host = ""
    host = host.removeprefix("www.")
    trailing = url[len(url.rstrip(_TRAILING_PUNCT)) :]
    return (host or "a link") + trailing


class SpeechShaper:
    """Stateful, streaming markdown-to-speech rewriter for one reply."""

    __slots__ = ("_drop_line", "_in_fence", "_in_think", "_last_char", "_line_start", "_tail")

    def __init__(self) -> None:
        self._tail = ""
        self._in_fence = False
        self._in_think = False
        self._drop_line = False
        self._line_start = True
        self._last_char = ""

    def feed(self, text: str) -> str:
        """Shape ``text``; return what can be spoken now (possibly empty)."""
        buf = self._tail + text
        if not self._tail and not self._in_fence and not self._in_think and not self._drop_line:
            plain = buf and not _SPECIAL.search(buf) and not (self._line_start and buf[0] in "-+>|# \t")
            if plain and not _needs_hold(buf[buf.rfind(" ") + 1 :]):
                # Fast path: plain prose.
                self._tail = ""
                self._line_start = False
                if buf:
                    self._last_char = buf[-1]
                return buf
        cut = self._safe_cut(buf)
        self._tail = buf[cut:]
        return self._shape(buf[:cut])

    def finish(self) -> str:
        """Shape and return whatever is still held, as it stands (the end of a stream, a tool starting, the
        channel speaking in between). The shaper can go on: what comes next is shaped with the same state
        (inside a code block, at a line's start)."""
        tail, self._tail = self._tail, ""
        return self._shape(tail)

    # --- holding back unfinished constructs ---------------------------------------------------

    def _safe_cut(self, buf: str) -> int:
        cut = len(buf)
        # A table row is rewritten as a whole line: hold an unfinished one.
        line_start = buf.rfind("\n") + 1
        if (line_start or self._line_start) and buf[line_start:].lstrip().startswith("|"):
            if len(buf) - line_start <= _MAX_HOLD["["]:
                cut = line_start
        space = max(buf.rfind(" ", 0, cut), buf.rfind("\n", 0, cut), buf.rfind("\t", 0, cut))
        word = buf[space + 1 : cut]
        if word and _needs_hold(word):
            cut = space + 1
        head = buf[:cut]
        for opener, closer in (("[", ")"), ("`", "`"), ("<", ">")):
            start = _unclosed(head, opener, closer)
            if start is not None and opener == "[" and start > 0 and buf[start - 1] == "!":
                start -= 1  # an image: ![alt](url)
            if start is not None and len(buf) - start <= _MAX_HOLD[opener]:
                cut = min(cut, start)
                head = buf[:cut]
        # Never cut a line's indentation from what follows it (a tokeniser often gives it a token of
        # its own): a line's markup (bullet, heading, quote, fence) is recognised only at its start.
        line_start = buf.rfind("\n", 0, cut) + 1
        if (line_start or self._line_start) and not buf[line_start:cut].strip():
            cut = line_start
        return cut

    # --- rewriting ------------------------------------------------------------------------------

    def _shape(self, segment: str) -> str:
        if not segment:
            return ""
        out: list[str] = []
        for piece in segment.splitlines(keepends=True):
            at_line_start = self._line_start
            ends_line = piece.endswith("\n")
            self._line_start = ends_line
            line = piece[:-1] if ends_line else piece
            if self._drop_line:
                self._drop_line = not ends_line
                continue
            if at_line_start and _FENCE.match(line):
                self._in_fence = not self._in_fence
                self._drop_line = not ends_line
                continue
            if self._in_fence:
                continue
            if at_line_start:
                if _RULE.match(line) and line.strip():
                    continue
                line = self._strip_line_markup(line)
            spoken = self._inline(line)
            if spoken:
                out.append(spoken)
                self._last_char = spoken[-1]
            if ends_line:
                out.append(self._line_break())
        return "".join(out)

    def _strip_line_markup(self, line: str) -> str:
        line = _HEADING.sub("", line, count=1)
        line = _QUOTE.sub("", line, count=1)
        line = _BULLET.sub("", line, count=1)
        row = _TABLE_ROW.match(line)
        if row:
            cells = [cell.strip() for cell in row.group(1).split("|")]
            line = ", ".join(cell for cell in cells if cell)
        return line

    def _inline(self, text: str) -> str:
        text = self._drop_think(text)
        if not text:
            return ""
        text = _IMAGE.sub(r"\1", text)
        text = _LINK.sub(r"\1", text)
        text = _AUTOLINK.sub(lambda m: _host(m.group(1)), text)
        text = _URL.sub(lambda m: _host(m.group(0)), text)
        text = _TAG.sub(_untag, text)
        text = text.replace("`", "")
        text = _STRONG.sub("", text)
        # Emphasis depends on the character before: give it the last one spoken as context.
        context = self._last_char if self._last_char.isalnum() or self._last_char.isspace() else " "
        text = _EMPHASIS.sub("", (context or " ") + text)[1:]
        # An inline pipe (a table cell not at a line start) is a pause; no whitespace games, so
        # the result does not depend on where the stream was cut.
        return text.replace("|", ",")

    def _drop_think(self, text: str) -> str:
        kept: list[str] = []
        while text:
            if self._in_think:
                close = _THINK_CLOSE.search(text)
                if close is None:
                    return "".join(kept)
                self._in_think = False
                text = text[close.end() :]
            else:
                open_ = _THINK_OPEN.search(text)
                if open_ is None:
                    kept.append(text)
                    break
                kept.append(text[: open_.start()])
                self._in_think = True
                text = text[open_.end() :]
        return "".join(kept)

    def _line_break(self) -> str:
        if not self._last_char or self._last_char in " \n":
            return ""
        punct = self._last_char in _PHRASE_END
        self._last_char = " "
        return " " if punct else ". "


def _needs_hold(word: str) -> bool:
    return bool(_HOLD_CHARS.search(word) or _MARKER_WORD.fullmatch(word)) or _is_url_prefix(word)


def _is_url_prefix(word: str) -> bool:
    lowered = word.lower()
    return bool(lowered) and any(prefix.startswith(lowered) for prefix in _URL_PREFIXES)


def _unclosed(text: str, opener: str, closer: str) -> int | None:
    """Index of the last ``opener`` that has no ``closer`` after it, if any."""
    start = text.rfind(opener)
    if start < 0:
        return None
    if opener == "`":
        # Inline code: an odd number of single backticks means one is open.
        singles = text.replace("```", "")
        return start if singles.count("`") % 2 else None
    if opener == "[":
        rest = text[start:]
        if "]" not in rest:
            return start
        after = rest[rest.index("]") + 1 :]
        if after == "" or (after.startswith("(") and ")" not in after):
            return start
        return None
    return start if closer not in text[start:] else None


def shape_text(text: str) -> str:
    """Shape a complete text at once."""
    shaper = SpeechShaper()
    return shaper.feed(text) + shaper.finish()
