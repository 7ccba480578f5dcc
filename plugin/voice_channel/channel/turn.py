"""A turn: the reply window opened by one ``user_transcript``, bound to its ``event_id``.

A :class:`Turn` owns what is spoken in reply to one transcript: it shapes and chunks the
runtime's text, sends the filler phrase when the runtime is slow, says progress phrases while the
runtime runs a tool (:mod:`voice_channel.channel.progress`), flushes held text when the runtime
stalls, and ends with exactly one ``is_final``. It never decides *what* to say; the
:class:`~voice_channel.channel.conversation.Conversation` does.

Every frame carries its own turn, and the :class:`~voice_channel.channel.outbox.Outbox` checks
:attr:`Turn.is_current` right before writing. :meth:`Turn.supersede` is synchronous and is
called the moment a newer transcript is read, so nothing of this turn is written afterwards.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import AsyncIterator
from typing import Any

import structlog

from voice_channel.channel.outbox import Frame, Outbox
from voice_channel.channel.progress import PhraseSource, ProgressSpeaker
from voice_channel.channel.speech import PhraseChunker, SpeechShaper, extract_text
from voice_channel.logging import log_after_queued_work
from voice_channel.runtime import ConfirmationRequest, Notice, TextDelta, ToolActivity, ToolPhase
from voice_channel.serving.metrics import NO_METRICS, Metrics
from voice_channel.settings import TurnSettings

__all__ = ["Turn", "TurnState"]


class TurnState(enum.Enum):
    RUNNING = "running"
    FINISHED = "finished"
    SUPERSEDED = "superseded"


class Turn:
    """One reply window. Created and driven by a conversation."""

    # A conversation keeps its last turn while idle; thousands are open per process.
    __slots__ = (
        "_chunker",
        "_conversation_log",
        "_filler",
        "_log",
        "_loop",
        "_metrics",
        "_outbox",
        "_progress",
        "_progress_source",
        "_runtime_name",
        "_settings",
        "_shaper",
        "_stall",
        "channel_phrases",
        "event_id",
        "first_text_at",
        "last_sent_at",
        "runtime_output",
        "spoken",
        "started_at",
        "state",
        "task",
        "tools_running",
    )

    def __init__(
        self,
        event_id: int | None,
        *,
        outbox: Outbox,
        settings: TurnSettings,
        log: structlog.typing.FilteringBoundLogger,
        metrics: Metrics = NO_METRICS,
        runtime_name: str = "",
        progress: PhraseSource | None = None,
    ) -> None:
        self.event_id = event_id
        self.state = TurnState.RUNNING
        self.task: asyncio.Task[None] | None = None
        #: Everything sent for this turn, in order (for a replay and for the record).
        self.spoken: list[str] = []
        #: What the runtime gave this turn: characters of its text as shaped for speech (not the filler,
        #: prompts or apologies; not a code block or markup, which nobody hears) plus one per
        #: confirmation request. Zero after a run ended means it said nothing the caller could hear.
        self.runtime_output = 0
        self.started_at = time.perf_counter()
        self.first_text_at: float | None = None
        self._conversation_log = log
        self._log: structlog.typing.FilteringBoundLogger | None = None
        self._outbox = outbox
        self._settings = settings
        self._metrics = metrics
        self._runtime_name = runtime_name
        self._chunker = PhraseChunker(settings.chunk_max_chars)
        self._shaper = SpeechShaper()
        self._loop = asyncio.get_running_loop()
        self._stall: asyncio.TimerHandle | None = None
        #: The filler's timer, or the callback that arms it (see :meth:`speak`).
        self._filler: asyncio.Handle | None = None
        #: Progress speech while tools run (None: off); the speaker exists once a tool started.
        self._progress_source = progress
        self._progress: ProgressSpeaker | None = None
        #: When text was last sent, on the progress clock (kept only with progress speech on).
        self.last_sent_at: float | None = None
        #: Tools the last :meth:`speak` left running (started, not ended): a run paused on a
        #: confirmation carries them to the turn that approves it (``speak(..., running_tools=...)``).
        self.tools_running: tuple[ToolActivity, ...] = ()
        #: What the channel said on its own in this turn (filler, progress phrases, what :meth:`say` said), for
        #: the record.
        self.channel_phrases: tuple[str, ...] = ()

    # --- state ---------------------------------------------------------------------------------

    @property
    def log(self) -> structlog.typing.FilteringBoundLogger:
        """The conversation's logger bound to this turn's ``event_id`` (bound on first use)."""
        if self._log is None:
            self._log = self._conversation_log.bind(event_id=self.event_id)
        return self._log

    @property
    def is_current(self) -> bool:
        """Frames of this turn may still be written (it has not been superseded)."""
        return self.state is not TurnState.SUPERSEDED

    @property
    def running(self) -> bool:
        return self.state is TurnState.RUNNING

    @property
    def text(self) -> str:
        return "".join(self.spoken)

    def supersede(self) -> None:
        """Synchronously stop this turn's output; called when a newer transcript is read."""
        if self.state is TurnState.SUPERSEDED:
            return
        self.state = TurnState.SUPERSEDED
        self._cancel_timers()
        if self._progress is not None:
            self._progress.cancel()  # awaited where speak() ends

    # --- speaking --------------------------------------------------------------------------------

    async def say(self, text: str) -> None:
        """Speak channel-authored text (prompts, apologies, a repeat) as one chunk, after the runtime's words
        still held (a runtime that failed mid-sentence), and never glued to the last word sent. It is one of
        the turn's :attr:`channel_phrases`: no words of the runtime's in the record."""
        if text:
            await self._flush_all()
            text = self._unglued(text)
            self.channel_phrases += (text,)
            await self._send_text(text)

    async def speak(
        self, events: AsyncIterator[Any], *, running_tools: tuple[ToolActivity, ...] = ()
    ) -> ConfirmationRequest | None:
        """Speak a runtime's stream until it ends, or until it asks for a confirmation.

        Returns the :class:`ConfirmationRequest` the runtime paused on (the iterator is left
        open, to be resumed by a later turn), or ``None`` when the stream is exhausted. The
        caller owns the iterator and closes it.

        ``running_tools``: tools the stream started before it paused on a confirmation this turn's
        answer approved. They run now, so this turn speaks for them as for a tool started here (the
        start phrase after ``progress.delay_s``, then progress lines).
        """
        self.arm_filler()
        try:
            for activity in running_tools:
                await self._on_tool(activity)
            async for event in events:
                if isinstance(event, TextDelta):
                    text: str | None = event.text
                elif isinstance(event, ConfirmationRequest):
                    self.runtime_output += 1
                    await self._flush_all()
                    return event
                elif isinstance(event, Notice):
                    self.log.debug("runtime_notice", kind=event.kind, length=len(event.text))
                    continue
                elif isinstance(event, ToolActivity):
                    await self._on_tool(event)
                    continue
                else:
                    text = extract_text(event)
                if text:
                    await self._feed(text)
            # The stream is done: what the shaper still holds is decided now (and counted above all).
            await self._flush_all()
            return None
        finally:
            self._cancel_timers()
            if self._progress is not None:
                # Finished, interrupted or paused on a confirmation: no progress speech after this.
                progress, self._progress = self._progress, None
                self.tools_running = progress.running_tools()
                await progress.aclose()

    async def finish(self) -> None:
        """Send what is held, then the turn's single ``is_final``."""
        if self.state is not TurnState.RUNNING:
            return
        await self._flush_all()
        self._cancel_timers()
        if self.state is TurnState.RUNNING:
            self.state = TurnState.FINISHED
            await self._outbox.send(Frame(self, "", is_final=True))
            self._metrics.turn_finished(self._runtime_name, time.perf_counter() - self.started_at)
            # After the work queued now (the next transcript may be waiting), and without binding
            # a logger for this turn: the conversation's, with the event_id as a field.
            log_after_queued_work(
                self._conversation_log,
                "info",
                "turn_finished",
                event_id=self.event_id,
                chars=sum(map(len, self.spoken)),
                first_text_ms=None
                if self.first_text_at is None
                else round((self.first_text_at - self.started_at) * 1000, 2),
                total_ms=round((time.perf_counter() - self.started_at) * 1000, 2),
            )

    def arm_filler(self) -> None:
        """Start the first-text deadline (once; nothing if text was sent or the filler is off).

        Called when the turn starts, not only when the runtime's stream does: what comes before it
        (the interrupted run stopping, the runtime session opening, transcript hooks) counts too.
        """
        if not self.spoken and self._settings.filler_enabled and self._filler is None and self.running:
            # Armed one loop pass later: a runtime that answers at once (its first text is sent in
            # this step) costs no timer, and the timer's cost is not paid before the first chunk.
            self._filler = self._loop.call_soon(self._arm_filler)

    def say_progress(self, text: str) -> bool:
        """Send a progress phrase now, as one chunk; False (nothing sent) if the turn cannot speak or
        holds text it has not sent yet (the phrase would cut into it)."""
        if self.state is not TurnState.RUNNING or self._chunker.pending:
            return False
        text = self._unglued(text.strip() + " ")
        self._record_sent(text)
        self.channel_phrases += (text,)
        self._outbox.post(Frame(self, text))
        return True

    def release(self) -> None:
        """Let go of what only a running turn needs, once it has ended (finished or superseded).

        A conversation keeps its last turn while idle, for a re-sent transcript to replay and for
        the next one to supersede: that takes its ``event_id``, state and what it sent. The chunker,
        the shaper and the turn's bound logger go; what was sent becomes one string (the same object
        :attr:`text` then returns, and the record keeps). A turn still running keeps everything.
        """
        if self.state is TurnState.RUNNING:
            return
        self._cancel_timers()
        self._chunker = self._shaper = None  # type: ignore[assignment]  # never used once not running
        self._log = None
        if len(self.spoken) > 1:
            self.spoken = ["".join(self.spoken)]

    def replay(self) -> None:
        """Re-send the finished reply in full, then ``is_final`` (ElevenLabs re-sent this turn)."""
        text = self.text
        if text:
            self._outbox.post(Frame(self, text))
        self._outbox.post(Frame(self, "", is_final=True))

    # --- internals -----------------------------------------------------------------------------

    async def _feed(self, text: str) -> None:
        await self._chunk(self._shaper.feed(text))

    def _unglued(self, text: str) -> str:
        """``text`` with a space first if it would otherwise be glued to the last word sent (ElevenLabs
        joins a turn's chunks as they are)."""
        if self.spoken and not self.spoken[-1][-1:].isspace() and not text[:1].isspace():
            return " " + text
        return text

    async def _send_shaped(self, shaped: str) -> None:
        """Count the runtime's shaped text and send what the chunker lets out of it."""
        self.runtime_output += len(shaped.strip())
        chunk = self._chunker.feed(shaped) if shaped else None
        if chunk:
            await self._send_text(chunk)

    async def _chunk(self, shaped: str) -> None:
        await self._send_shaped(shaped)
        if self._chunker.pending:
            if self._stall is None:
                self._stall = self._loop.call_later(self._settings.stall_flush_ms / 1000, self._flush_on_stall)
        elif self._stall is not None:
            self._stall.cancel()
            self._stall = None

    async def _on_tool(self, activity: ToolActivity) -> None:
        if activity.phase is ToolPhase.START:
            # The runtime's text before the tool is complete: what the shaper still holds (a trailing
            # "#42", "my_file" or "(soon)." that might have become markup) goes to the chunker now, so it
            # is heard before the tool runs, and a progress phrase never lands between it and the rest.
            await self._chunk(self._shaper.finish())
        if self._progress_source is None:
            return
        self.log.debug("runtime_tool", phase=activity.phase.value, tool=activity.tool)
        if self._progress is None:
            if not self.running or activity.phase is ToolPhase.END:
                return  # an end without a start here: nothing to stop
            self._progress = ProgressSpeaker(self._progress_source, self, self.log)
        await self._progress.on_tool(activity)

    async def _flush_all(self) -> None:
        await self._send_shaped(self._shaper.finish())
        chunk = self._chunker.flush()
        if chunk:
            await self._send_text(chunk)
        self._shaper = SpeechShaper()

    def _flush_on_stall(self) -> None:
        # Timer callback: the runtime paused with text held back; send it now.
        self._stall = None
        chunk = self._chunker.flush()
        if chunk and self.is_current:
            self._record_sent(chunk)
            self._outbox.post(Frame(self, chunk))

    def _arm_filler(self) -> None:
        # Cancelled with the other timers when speaking ends, and when the first text is sent.
        self._filler = self._loop.call_later(self._settings.first_text_deadline_s, self._send_filler)

    def _send_filler(self) -> None:
        # Timer callback: nothing said by the deadline; keep ElevenLabs from re-sending the turn.
        self._filler = None
        if not self.spoken and self.state is TurnState.RUNNING:
            self.log.info("filler_sent", deadline_s=self._settings.first_text_deadline_s)
            text = self._settings.filler_text + " "
            self._record_sent(text)
            self.channel_phrases += (text,)
            self._outbox.post(Frame(self, text))

    async def _send_text(self, text: str) -> None:
        first = self.first_text_at is None
        self._record_sent(text, observe=False)
        try:
            await self._outbox.send(Frame(self, text))
        finally:
            if first and self.first_text_at is not None:
                # Observed after the write (the time was taken before it): off the first chunk's path.
                self._metrics.first_chunk(self._runtime_name, self.first_text_at - self.started_at)

    def _record_sent(self, text: str, *, observe: bool = True) -> None:
        if self.first_text_at is None:
            self.first_text_at = time.perf_counter()
            if observe:
                self._metrics.first_chunk(self._runtime_name, self.first_text_at - self.started_at)
            if self._filler is not None:
                self._filler.cancel()
                self._filler = None
        if self._progress_source is not None:
            self.last_sent_at = self._progress_source.clock.now()
        self.spoken.append(text)

    def _cancel_timers(self) -> None:
        for handle in (self._stall, self._filler):
            if handle is not None:
                handle.cancel()
        self._stall = self._filler = None
