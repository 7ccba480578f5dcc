"""One conversation as one Hermes chat: the voice channel's runtime session for Hermes.

:class:`VoiceChat` is the :class:`~voice_channel.runtime.RuntimeSession` the channel drives, and
the place the adapter routes Hermes's calls for this chat to. It keeps one invariant that makes
everything else simple: **at most one of its messages is in Hermes at a time**. A message is
submitted only once Hermes is idle for the chat, and an interrupted one is stopped (a ``/stop``,
Hermes's hard cancel) and waited for before the next goes in. So every message gets its own
processing task in Hermes, with its own start and completion callbacks, and every ``send()``
anchored to it can be told apart from gateway notices and from an older run's leftovers.

Routing rules (the facts behind them are in the README's Hermes section):

* a ``send()`` is part of the reply when it is anchored to the message in flight (``reply_to``
  or ``metadata.reply_to_message_id``) and carries content metadata (``notify`` or
  ``expect_edits``); everything else (busy acks, ``/stop`` and approval confirmations, onboarding,
  pairing, tool progress, errors) is a notice: logged, never spoken;
* drafts belong to the message in flight unless their id predates it;
* after an interruption the old reply is closed first, so nothing Hermes delivers for it later,
  including the partial answer it re-delivers on an interrupt, reaches any turn;
* before the next message goes in, Hermes's transcript is made to hold what the caller heard of
  the previous reply (the channel's record says how much), so the model is not told it said more.

The adapter side is the :class:`HermesPort` protocol, so this logic is tested without a gateway.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from voice_channel import ConfirmationDecision, ConversationContext, RuntimeMessage, ToolActivity
from voice_channel_hermes.prompting import approval_request
from voice_channel_hermes.stream import ReplyStream

__all__ = ["HermesPort", "VoiceChat"]

#: How Hermes's gateway answers when handling a message raised (``GatewayRunner._handle_message_with_agent``).
HERMES_UNEXPECTED_ERROR = "Sorry, I encountered an unexpected error."


class HermesPort(Protocol):
    """What a :class:`VoiceChat` needs from the Hermes adapter."""

    #: The streaming cursor Hermes appends to drafts (``streaming.cursor``).
    cursor: str

    async def submit(self, chat: VoiceChat, text: str, message_id: str) -> None:
        """Hand one message to Hermes (returns once Hermes has taken it, not when answered)."""
        ...

    async def stop(self, chat: VoiceChat, timeout: float) -> None:
        """Stop Hermes's run for the chat, if any, and wait (bounded) until it is idle."""
        ...

    async def wait_idle(self, chat: VoiceChat, timeout: float) -> bool:
        """Wait (bounded) until Hermes processes nothing for the chat and its agent run has ended
        (and was persisted); False on timeout."""
        ...

    async def amend_reply(self, chat: VoiceChat, heard_words: int) -> None:
        """Cut the last reply in the chat's Hermes transcript to its first ``heard_words`` words."""
        ...

    def resolve_approval(self, session_key: str, choice: str) -> int:
        """Answer the oldest approval Hermes waits on for the session (``once`` or ``deny``)."""
        ...

    def forget(self, chat: VoiceChat) -> None:
        """The conversation is over: stop routing to this chat."""
        ...


@dataclass(frozen=True, slots=True)
class _Approval:
    session_key: str
    stream: ReplyStream


@dataclass(frozen=True, slots=True)
class _Answered:
    """The previous message: whose reply the record's last entry may be."""

    event_id: int | None
    #: A confirmation was asked in its reply: the spoken text is not only Hermes's.
    asked: bool


class VoiceChat:
    """The runtime session of one conversation in Hermes (see the module docstring)."""

    def __init__(
        self,
        port: HermesPort,
        context: ConversationContext,
        *,
        chat_id: str,
        session_key: str,
        source: Any,
        stop_timeout_s: float,
    ) -> None:
        self.chat_id = chat_id
        self.session_key = session_key
        #: Hermes's ``SessionSource`` for this chat (opaque here).
        self.source = source
        self.current: ReplyStream | None = None
        self._port = port
        self._context = context
        self._stop_timeout_s = stop_timeout_s
        self._ids = itertools.count(1)
        self._approvals: dict[str, _Approval] = {}
        self._max_draft_id = 0
        self._closed = False
        self._previous: _Answered | None = None
        self.log = structlog.get_logger("voice_channel_hermes").bind(
            conversation_id=context.conversation_id, hermes_chat_id=chat_id
        )

    # --- RuntimeSession ----------------------------------------------------------------------------

    async def respond(self, message: RuntimeMessage) -> AsyncIterator[Any]:
        """Send the utterance to Hermes and stream its reply until Hermes is done with it.

        The text Hermes gets is ``message.prompt``: the caller's words inside the conversation's
        spotlighting marker, which the platform hint explains to the model. It also keeps the
        words from ever being read as a gateway command: Hermes acts on a leading ``/`` and on a
        bare "yes" or "approve" while an approval is pending; a marker-wrapped message is neither.
        """
        stream = await self._open_stream(message)
        try:
            await self._port.submit(self, message.prompt, stream.message_id)
            async for event in stream.events():
                yield event
        finally:
            await self._release(stream)

    async def resolve(self, request_id: str, decision: ConfirmationDecision) -> None:
        """Answer Hermes's approval: ``once`` for the caller's yes, ``deny`` for anything else."""
        approval = self._approvals.pop(request_id, None)
        if approval is None:
            self.log.warning("hermes_approval_unknown", request_id=request_id)
            return
        # Never "always" or "session" by voice: one yes approves this one call.
        choice = "once" if decision.approved else "deny"
        resolved = self._port.resolve_approval(approval.session_key, choice)
        self.log.info("hermes_approval_resolved", request_id=request_id, choice=choice, resolved=resolved)

    async def aclose(self) -> None:
        self._closed = True
        stream = self.current
        if stream is not None:
            await self._release(stream)
        self._port.forget(self)

    # --- from the adapter: Hermes's calls for this chat ----------------------------------------------

    def on_draft(self, draft_id: int, content: str) -> None:
        self._max_draft_id = max(self._max_draft_id, draft_id)
        stream = self.current
        if stream is None or not stream.draft(draft_id, content):
            self.log.debug("hermes_draft_dropped", draft_id=draft_id)

    def on_send(
        self,
        content: str,
        reply_to: str | None,
        metadata: Mapping[str, Any] | None,
        message_id: str,
        *,
        failed: bool = False,
    ) -> None:
        """A ``send()`` for this chat; ``failed``: the run's LLM request failed, so a reply is Hermes's error text."""
        stream = self.current
        meta = metadata or {}
        anchor = reply_to or meta.get("reply_to_message_id")
        content_kind = bool(meta.get("notify") or meta.get("expect_edits"))
        if stream is not None and anchor == stream.message_id and content_kind:
            if failed or content.startswith(HERMES_UNEXPECTED_ERROR):
                # Hermes's error text for the caller ("The model provider failed..."): the channel's apology instead.
                stream.notice(content, "gateway")
                stream.fail()
                return
            if meta.get("expect_edits") and not meta.get("notify"):
                stream.preview(message_id, content)
            else:
                stream.final(content)
            return
        if stream is not None:
            stream.notice(content, "gateway")
        self.log.info("hermes_notice_not_spoken", chars=len(content), anchored=anchor is not None)

    def on_edit(self, message_id: str, content: str, finalize: bool) -> None:
        stream = self.current
        if stream is None or not stream.edit(message_id, content, finalize=finalize):
            self.log.debug("hermes_edit_dropped", message_id=message_id)

    def on_processing(self, message_id: str | None, outcome: str | None) -> None:
        """Hermes started (``outcome`` None) or finished processing one of this chat's messages."""
        stream = self.current
        if stream is None or message_id != stream.message_id:
            return
        if outcome is None:
            stream.started = True
        else:
            stream.complete(outcome)

    def on_tool(self, activity: ToolActivity) -> None:
        """A tool of this chat's Hermes run started or ended: part of the reply in flight, if any."""
        stream = self.current
        if stream is not None:
            stream.tool(activity)

    def on_approval(self, command: str, description: str, session_key: str, *, smart_denied: bool = False) -> bool:
        """Hermes waits on an approval for this chat; False if no reply is open to ask it in."""
        stream = self.current
        if stream is None or stream.closed or stream.outcome is not None or self._closed:
            return False
        request = approval_request(
            f"hermes-approval-{next(self._ids)}", command, description, smart_denied=smart_denied
        )
        self._approvals[request.id] = _Approval(session_key, stream)
        self.log.info("hermes_approval_requested", request_id=request.id)
        stream.confirm(request)
        return True

    # --- internals -----------------------------------------------------------------------------------

    async def _open_stream(self, message: RuntimeMessage) -> ReplyStream:
        """Wait until Hermes is idle for the chat, then open the reply of a new message."""
        if not await self._port.wait_idle(self, self._stop_timeout_s):
            # Still busy (a run that ignored /stop): the message would be queued behind it.
            self.log.warning("hermes_chat_busy_stopping", timeout_s=self._stop_timeout_s)
            await self._port.stop(self, self._stop_timeout_s)
        await self._amend_previous_reply()
        message_id = f"{self.chat_id}:{message.event_id}:{next(self._ids)}"
        stream = ReplyStream(
            message_id, cursor=self._port.cursor, draft_floor=self._max_draft_id, event_id=message.event_id
        )
        self.current = stream
        self.log.debug("hermes_message_submitted", message_id=message_id)
        return stream

    async def _release(self, stream: ReplyStream) -> None:
        """The reader is done with ``stream``: close it, and stop Hermes if it is still at it."""
        if self.current is stream:
            self.current = None
        if stream.closed:
            return
        stream.close()
        self._previous = _Answered(stream.event_id, stream.confirmations > 0)
        for request_id in [rid for rid, approval in self._approvals.items() if approval.stream is stream]:
            # Nobody will answer these any more; /stop below makes Hermes deny them.
            del self._approvals[request_id]
        self._max_draft_id = max(self._max_draft_id, stream.max_draft_id)
        if stream.outcome is None:
            self.log.info("hermes_run_interrupted", message_id=stream.message_id, spoken_chars=stream.chars)
            try:
                await self._port.stop(self, self._stop_timeout_s)
            except Exception:
                self.log.exception("hermes_stop_failed", message_id=stream.message_id)

    async def _amend_previous_reply(self) -> None:
        """Make Hermes's transcript hold only what the caller heard of the previous reply."""
        previous, self._previous = self._previous, None
        if previous is None or previous.asked or previous.event_id is None:
            return
        heard = self._heard_words(previous.event_id)
        if heard is None:
            return
        try:
            await self._port.amend_reply(self, heard)
        except Exception:
            self.log.exception("hermes_reply_amend_failed", heard_words=heard)

    def _heard_words(self, event_id: int) -> int | None:
        """How many words of the reply to ``event_id`` the caller heard; None if all of it (or unknown).

        The record ends with that message and its reply as heard (cut short, or removed when nothing
        was heard). What the channel said on its own in that reply (the filler, progress phrases, a
        plugin's included) is not Hermes's text: the turn engine lists it in the entry. An entry
        without that list (added by other code) is read as before the list existed: the configured
        progress phrases and a leading filler are taken out.
        """
        entries = self._context.record.entries
        last = entries[-1] if entries else None
        if last is None or last.event_id != event_id:
            return None
        if last.role == "user":
            return 0
        if not last.interrupted:
            return None
        if last.channel_phrases is not None:
            return len(last.runtime_text.split())
        return len(self._words_without_configured_phrases(last.text))

    def _words_without_configured_phrases(self, text: str) -> list[str]:
        start, progress = self._context.settings.progress.phrases_for(self._context.language)
        for phrase in (*start, *progress):
            text = text.replace(phrase, " ")
        words = text.split()
        filler = self._context.settings.turn.filler_text.split()
        if filler and [w.casefold() for w in words[: len(filler)]] == [w.casefold() for w in filler]:
            words = words[len(filler) :]
        return words
