"""One submitted message's reply, turned from Hermes's delivery calls into speakable events.

Hermes never hands an adapter raw token deltas. Its stream consumer calls
``send_draft(chat_id, draft_id, text)`` with the *cumulative* text of the current segment (plus a
cursor), and closes each segment (the text before a tool call, the final answer) with a
``send()`` of the whole segment, anchored to the message it answers. With the edit transport
(``streaming.transport: edit``) it ``send()`` s a preview and then ``edit_message()`` s it instead.
Without streaming there is only the final ``send()``.

A :class:`ReplyStream` turns that into what the voice channel speaks: each call's new suffix
becomes a :class:`~voice_channel.runtime.TextDelta`; the closing ``send()`` is authoritative and
only its not-yet-spoken rest is added; a new segment starts a new sentence. It never decides
*what* belongs to it: :class:`~voice_channel_hermes.chat.VoiceChat` routes calls here only when
they are anchored to this message. It ends when Hermes reports the message processed.

Everything here is synchronous and non-blocking (Hermes calls the adapter from the gateway loop);
the events are read by one consumer, the conversation's turn, through :meth:`ReplyStream.events`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import structlog

from voice_channel import ConfirmationRequest, Notice, TextDelta, ToolActivity

__all__ = ["HermesRunFailed", "ReplyStream"]

log = structlog.get_logger("voice_channel_hermes.stream")


class HermesRunFailed(RuntimeError):
    """Hermes reported the message as failed; the channel speaks its apology."""


@dataclass(frozen=True, slots=True)
class _End:
    outcome: str


class ReplyStream:
    """The events of the reply to one message (see the module docstring)."""

    def __init__(self, message_id: str, *, cursor: str = "", draft_floor: int = 0, event_id: int | None = None) -> None:
        self.message_id = message_id
        #: The ``event_id`` of the transcript the message came from.
        self.event_id = event_id
        #: Confirmations asked in this reply.
        self.confirmations = 0
        #: Drafts with an id at or below this belong to earlier runs (Hermes's ids only grow).
        self.draft_floor = draft_floor
        self.started = False
        #: ``success``/``failure``/``cancelled`` once Hermes has finished with the message.
        self.outcome: str | None = None
        #: Closed by the reader (turn over or cancelled): nothing is routed here any more.
        self.closed = False
        self.max_draft_id = draft_floor
        self._cursor = cursor
        self._queue: asyncio.Queue[TextDelta | Notice | ConfirmationRequest | ToolActivity | _End] = asyncio.Queue()
        self._segment: tuple[str, Any] | None = None
        self._segment_text = ""
        self._spoken_any = False
        self._needs_separator = False
        self.chars = 0

    # --- what Hermes delivers ---------------------------------------------------------------------

    def draft(self, draft_id: int, content: str) -> bool:
        """A cumulative draft frame; returns whether it belonged to this reply."""
        if self.closed or self.outcome is not None or draft_id <= self.draft_floor:
            return False
        self.max_draft_id = max(self.max_draft_id, draft_id)
        key = ("draft", draft_id)
        if self._segment != key:
            # A new draft id is a new segment (after a tool call). Normally the previous one was
            # closed by its send(); if that send never came, what was spoken of it stays spoken.
            self._close_segment()
            self._segment = key
        self._advance(self._strip_cursor(content))
        return True

    def final(self, content: str) -> None:
        """The ``send()`` that closes the current segment (or carries the whole reply)."""
        if self.closed or self.outcome is not None:
            return
        self._advance(self._strip_cursor(content))
        self._close_segment()

    def preview(self, message_id: str, content: str) -> None:
        """Edit transport: the first ``send()`` of a segment, to be edited afterwards."""
        if self.closed or self.outcome is not None:
            return
        self._close_segment()
        self._segment = ("message", message_id)
        self._advance(self._strip_cursor(content))

    def edit(self, message_id: str, content: str, *, finalize: bool) -> bool:
        """Edit transport: the cumulative text of a previewed segment; returns whether it was ours."""
        if self.closed or self.outcome is not None or self._segment != ("message", message_id):
            return False
        self._advance(self._strip_cursor(content))
        if finalize:
            self._close_segment()
        return True

    def notice(self, text: str, kind: str) -> None:
        """Gateway chatter during this reply (busy acks, tool progress): logged, never spoken."""
        if not self.closed:
            self._queue.put_nowait(Notice(text[:500], kind))

    def tool(self, activity: ToolActivity) -> None:
        """Hermes started or finished a tool for this message (the channel's progress speech covers the wait)."""
        if not self.closed and self.outcome is None:
            self._queue.put_nowait(activity)

    def confirm(self, request: ConfirmationRequest) -> None:
        """Hermes waits for the caller's approval: the channel asks and resolves it."""
        self.confirmations += 1
        self._queue.put_nowait(request)

    def complete(self, outcome: str) -> None:
        """Hermes has finished with the message; whatever it delivered has been routed."""
        if self.outcome is None:
            self.outcome = outcome
            self._queue.put_nowait(_End(outcome))

    def fail(self) -> None:
        """The run failed: nothing more is spoken; the reply ends as a failure (the apology, if nothing was said)."""
        self.complete("failure")

    def close(self) -> None:
        """The reader is done: route nothing here any more."""
        self.closed = True

    # --- what the channel reads -------------------------------------------------------------------

    async def events(self) -> AsyncIterator[TextDelta | Notice | ConfirmationRequest | ToolActivity]:
        """The reply's events until Hermes is done with the message.

        :raises HermesRunFailed: Hermes reported a failure and nothing was said.
        """
        while True:
            item = await self._queue.get()
            if isinstance(item, _End):
                if item.outcome == "failure" and not self._spoken_any:
                    raise HermesRunFailed(f"Hermes failed to answer message {self.message_id}")
                return
            yield item

    # --- internals ----------------------------------------------------------------------------------

    def _strip_cursor(self, content: str) -> str:
        if self._cursor and content.endswith(self._cursor):
            return content[: -len(self._cursor)]
        return content

    def _advance(self, content: str) -> None:
        if content.startswith(self._segment_text):
            new = content[len(self._segment_text) :]
            self._segment_text = content
            self._emit(new)
        elif not self._segment_text.startswith(content):
            # Not an extension and not a prefix: Hermes rewrote the segment (it should not). What
            # was spoken cannot be taken back; keep going from what was said.
            log.warning("hermes_segment_rewritten", message_id=self.message_id, spoken_chars=len(self._segment_text))

    def _emit(self, text: str) -> None:
        if not text:
            return
        if self._needs_separator:
            self._needs_separator = False
            if not text[0].isspace():
                text = " " + text
        self._spoken_any = self._spoken_any or bool(text.strip())
        self.chars += len(text)
        self._queue.put_nowait(TextDelta(text))

    def _close_segment(self) -> None:
        if self._segment is None and not self._segment_text:
            return
        self._segment = None
        if self._segment_text and not self._segment_text[-1].isspace():
            self._needs_separator = True
        self._segment_text = ""
