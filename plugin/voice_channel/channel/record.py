"""The channel's own record of a conversation: what the runtime received, what the caller heard.

ElevenLabs sends the full history with every transcript, but that history is untrusted input.
The record is built only from what the channel itself passed to the runtime (sanitised caller
text) and what it sent to be spoken. The agent turns ElevenLabs echoes back, cut to what the
caller actually heard after a barge-in, are used for one thing only: trimming our own record.
They never add text to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["ConversationRecord", "RecordEntry"]


@dataclass(slots=True)
class RecordEntry:
    role: Literal["user", "assistant"]
    text: str
    event_id: int | None
    #: For assistant entries: the reply was cut short by the caller.
    interrupted: bool = False
    #: For assistant entries: what the channel said on its own (the filler, progress phrases, a plugin's
    #: included; prompts, apologies, a repeat), in the order said. Part of ``text``, not the runtime's words.
    #: ``None``: not known (an entry added without the list); the turn engine always gives it.
    channel_phrases: tuple[str, ...] | None = None

    @property
    def runtime_text(self) -> str:
        """``text`` without the channel's own phrases: the runtime's words (as far as they were heard).

        Each phrase is taken out once, in order (whitespace aside). A phrase the caller heard only
        part of was cut to that part by :meth:`ConversationRecord.reconcile_last_reply`, so that
        part is taken out too. Without the list, ``text`` as it is.
        """
        if not self.channel_phrases:
            return self.text
        text = _words(self.text)
        kept, position = [], 0
        for start, end in _phrase_spans(text, self.channel_phrases):
            kept.append(text[position:start])
            position = end
        kept.append(text[position:])
        return _words(" ".join(kept))


def _words(text: str) -> str:
    """``text`` with its whitespace made single spaces (what the spans below are counted in)."""
    return " ".join(text.split())


def _phrase_spans(text: str, phrases: tuple[str, ...]) -> list[tuple[int, int]]:
    """Where each phrase is in ``text`` (both whitespace-normalised), each found once, in order."""
    spans, position = [], 0
    for phrase in phrases:
        phrase = _words(phrase)
        found = text.find(phrase, position) if phrase else -1
        if found >= 0:
            position = found + len(phrase)
            spans.append((found, position))
    return spans


def _phrases_heard(text: str, phrases: tuple[str, ...], heard_chars: int) -> tuple[str, ...]:
    """The channel's phrases of ``text`` (whitespace-normalised) as far as its first ``heard_chars`` go.

    A phrase cut by that point is kept as the part heard: it is still the channel's, not the runtime's words.
    """
    spans = _phrase_spans(text, phrases)
    return tuple(text[start : min(end, heard_chars)] for start, end in spans if start < heard_chars)


def _norm(text: str) -> str:
    return _words(text).casefold()


class ConversationRecord:
    """Ordered, bounded record of one conversation."""

    __slots__ = ("_entries", "_max_entries")

    def __init__(self, max_entries: int = 200) -> None:
        self._entries: list[RecordEntry] = []
        self._max_entries = max_entries

    @property
    def entries(self) -> tuple[RecordEntry, ...]:
        return tuple(self._entries)

    def add_user(self, text: str, event_id: int | None) -> None:
        self._append(RecordEntry("user", text, event_id))

    def add_assistant(
        self,
        text: str,
        event_id: int | None,
        *,
        interrupted: bool = False,
        channel_phrases: tuple[str, ...] | None = None,
    ) -> None:
        """Record a reply as sent; ``channel_phrases`` are the parts of it the channel said on its own
        (``None``: not known)."""
        if text.strip():
            self._append(
                RecordEntry("assistant", text, event_id, interrupted=interrupted, channel_phrases=channel_phrases)
            )

    def last_assistant(self) -> RecordEntry | None:
        for entry in reversed(self._entries):
            if entry.role == "assistant":
                return entry
        return None

    def reconcile_last_reply(self, heard: str | None) -> None:
        """Cut our last reply to what ElevenLabs reports the caller heard of it.

        ``heard`` is the ``agent`` item that precedes the newest ``user`` item of an incoming
        history, or ``None`` when a ``user`` item precedes it directly. ``None`` means nothing was
        heard only if our reply was cut short (superseded before it ended); a reply that ended
        normally is kept. Only a strict prefix of our own text (ignoring whitespace and case) is
        accepted: other text is not ours (a client-side first message) or not trustworthy, and is
        ignored. Our own words are kept, cut where the caller stopped hearing.
        """
        if not self._entries or self._entries[-1].role != "assistant":
            return
        entry = self._entries[-1]
        if heard is None:
            if entry.interrupted:
                del self._entries[-1]
            return
        if heard == entry.text:
            return  # heard in full: the common case
        ours, theirs = _norm(entry.text), _norm(heard)
        if theirs and ours != theirs and ours.startswith(theirs):
            # Keep our own words, cut where the caller stopped hearing (the last heard word
            # may be partial): their text only tells how much, never what.
            words, heard_words = entry.text.split(), heard.split()
            kept = words[: len(heard_words)]
            kept[-1] = kept[-1][: len(heard_words[-1])]
            cut = " ".join(kept)
            if entry.channel_phrases:
                entry.channel_phrases = _phrases_heard(" ".join(words), entry.channel_phrases, len(cut))
            entry.text = cut
            entry.interrupted = True

    def as_messages(self) -> list[dict[str, str]]:
        """The record as OpenAI-style ``{"role", "content"}`` messages, for a model's history.

        An assistant message holds the runtime's own words: the channel's filler and progress phrases
        are left out (the model did not say them), and a reply that was nothing else is left out.
        """
        messages = []
        for entry in self._entries:
            content = entry.text if entry.role == "user" else entry.runtime_text
            if content:
                messages.append({"role": entry.role, "content": content})
        return messages

    def _append(self, entry: RecordEntry) -> None:
        self._entries.append(entry)
        if len(self._entries) > self._max_entries:
            del self._entries[: len(self._entries) - self._max_entries]
