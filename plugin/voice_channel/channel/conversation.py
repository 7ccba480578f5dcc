"""The turn engine: one :class:`Conversation` per Speech Engine WebSocket.

For a ``user_transcript`` with ``event_id`` E, while the current turn T has id T.e:

* E == T.e and T running → a re-send by ElevenLabs (no text came in time): keep going;
* E == T.e and T finished → re-send T's whole reply, ending with ``is_final``;
* E < T.e → stale: dropped and logged;
* E > T.e, or no id → a new turn. T is superseded *synchronously* (nothing of it is written
  from this instant), its task is cancelled, and the new turn's task first waits for T's task,
  and with it the runtime's iterator, to finish closing. The receive loop never waits.
* E more than :data:`~voice_channel.channel.protocol.MAX_EVENT_ID_JUMP` above T.e → refused and logged
  (an implausible jump would make every later genuine id look stale).

A transcript whose history ends with the agent's item has nothing new from the caller: its turn
ends with ``is_final`` and nothing else (logged ``transcript_ends_with_agent``).

A conversation owns at most one turn task and the runtime session. The run a turn speaks can
outlive its turn (paused on a spoken confirmation, or drained after one timed out): that state and
its flow live in :mod:`voice_channel.channel.pending`. :meth:`Conversation.close` cancels and awaits all of
it and closes the runtime session.

Thousands of conversations stay open per process, mostly idle: a conversation has ``__slots__``,
a finished turn lets go of its task, the runtime session is kept once open (not the task that
opened it), and the info lines of the latency path (a new conversation, an interruption) are
written after the work queued at that moment (:func:`~voice_channel.logging.log_after_queued_work`);
``conversation_started`` waits for the first transcript's first step (or 50 ms), since ElevenLabs
may send that transcript right behind ``init``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Coroutine, Mapping
from typing import TYPE_CHECKING, Any

import structlog

from voice_channel.channel.languages import language_from_headers, vocabulary
from voice_channel.channel.outbox import Frame, Outbox
from voice_channel.channel.pending import PendingRuns, Run
from voice_channel.channel.progress import PhraseSource
from voice_channel.channel.protocol import MAX_EVENT_ID_JUMP, UserTranscriptMessage
from voice_channel.channel.record import ConversationRecord
from voice_channel.channel.turn import Turn, TurnState
from voice_channel.channel.untrusted import (
    NOTHING_NEW,
    Utterance,
    clean_text,
    new_boundary,
    read_transcript,
    to_runtime_message,
)
from voice_channel.elevenlabs.ratelimit import TokenBucket
from voice_channel.logging import log_after_queued_work
from voice_channel.runtime import (
    ConfirmationRequest,
    ConversationContext,
    Intent,
    Refusal,
    Runtime,
    RuntimeMessage,
    RuntimeSession,
)
from voice_channel.serving.metrics import NO_METRICS, Metrics
from voice_channel.tasks import cancel_and_wait

if TYPE_CHECKING:
    from voice_channel.plugins import PluginHooks
    from voice_channel.settings import Settings

__all__ = ["Conversation"]

#: Never cached on first use (whatever ``configure_logging`` says): each bind assembles a logger
#: from the configuration of that moment, and holds only what it needs (the shared writer, the
#: processors, its own context). A cached proxy would hold on to the configuration of its first use.
_LOG = structlog.wrap_logger(None, cache_logger_on_first_use=False, logger_factory_args=("voice_channel.conversation",))

#: Longest the ``conversation_started`` line waits for the first transcript (see ``Conversation._start``).
_START_LINE_WAIT_S = 0.05


class Conversation:
    """State and turn engine of one conversation. Created by the endpoint per WebSocket."""

    __slots__ = (
        "_closed",
        "_hooks",
        "_language_rejected",
        "_metrics",
        "_outbox",
        "_pending",
        "_progress",
        "_runtime",
        "_session_task",
        "_session_value",
        "_settings",
        "_start_line",
        "_started",
        "_tasks",
        "_turns",
        "boundary",
        "conversation_id",
        "current",
        "ended_reason",
        "handshake_headers",
        "language",
        "log",
        "record",
        "runtime_name",
        "started_at",
    )

    def __init__(
        self,
        *,
        runtime: Runtime,
        runtime_name: str,
        hooks: PluginHooks,
        settings: Settings,
        outbox: Outbox,
        handshake_headers: Mapping[str, str] | None = None,
        metrics: Metrics = NO_METRICS,
    ) -> None:
        self.conversation_id: str | None = None
        self.runtime_name = runtime_name
        #: The upgrade request's headers, without authorization or shared-secret headers (the
        #: endpoint passes a view over the request's headers, not a copy: see ``auth.PublicHeaders``).
        self.handshake_headers: Mapping[str, str] = handshake_headers if handshake_headers is not None else {}
        #: The language confirmations and intents are understood in (see voice_channel.channel.languages).
        #: A language header naming a language the channel does not speak (logged once the id is bound).
        self.language, self._language_rejected = language_from_headers(
            self.handshake_headers, settings.confirmations.language_header, settings.confirmations.language
        )
        self.record = ConversationRecord()
        self.boundary = new_boundary()
        self.current: Turn | None = None
        self.started_at = time.time()
        self.ended_reason: str | None = None
        #: Bound to ``conversation_id`` once it is known (:meth:`_start`); until then, the module's logger.
        self.log: structlog.typing.FilteringBoundLogger = _LOG
        self._runtime = runtime
        self._hooks = hooks
        self._settings = settings
        self._outbox = outbox
        self._metrics = metrics
        self._turns = TokenBucket(settings.input.max_turns_per_minute)
        #: Opens the runtime session; dropped once it has (the session is kept instead).
        self._session_task: asyncio.Task[RuntimeSession] | None = None
        self._session_value: RuntimeSession | None = None
        #: Tasks to cancel and await on close (besides the turn's); created with the first one.
        self._tasks: set[asyncio.Task[Any]] | None = None
        self._closed = False
        self._pending = PendingRuns(self, hooks=hooks, settings=settings, metrics=metrics)
        #: The runtime session opened and ``conversation_started`` was announced.
        self._started = False
        #: Writes the ``conversation_started`` line if no transcript came first (see :meth:`_start`).
        self._start_line: asyncio.TimerHandle | None = None
        #: Progress phrases while tools run (None: ``progress.enabled`` is off).
        self._progress = (
            PhraseSource(settings.progress, hooks=hooks, conversation=self, language=self.language)
            if settings.progress.enabled
            else None
        )

    # --- inbound, called by the receive loop (never blocks) ---------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def awaiting_confirmation(self) -> ConfirmationRequest | None:
        """The request the next utterance will answer, if any."""
        return self._pending.awaiting

    def on_init(self, conversation_id: str) -> None:
        if self.conversation_id is not None:
            self.log.warning("duplicate_init_ignored", new_conversation_id=conversation_id)
            return
        self._start(conversation_id)

    def on_ping(self) -> None:
        self._outbox.post(Frame(None, pong=True))

    def on_transcript(self, message: UserTranscriptMessage) -> None:
        """Apply the turn rules to one transcript (see the module docstring)."""
        if self._closed:
            return
        if self.conversation_id is None:
            self._start(f"local-{uuid.uuid4().hex[:12]}")
            self.log.warning("transcript_before_init")
        event_id = message.event_id
        turn = self.current
        if event_id is None:
            self.log.warning("transcript_without_event_id")
        elif turn is not None and turn.event_id is not None:
            if event_id == turn.event_id:
                if turn.running:
                    log_after_queued_work(self.log, "info", "transcript_resent", event_id=event_id, action="continue")
                else:
                    log_after_queued_work(self.log, "info", "transcript_resent", event_id=event_id, action="replay")
                    turn.replay()
                return
            if event_id < turn.event_id:
                self.log.info("transcript_stale", event_id=event_id, current_event_id=turn.event_id)
                return
            if event_id - turn.event_id > MAX_EVENT_ID_JUMP:
                # Believing it would make every later genuine id look stale (see protocol notes).
                self.log.error(
                    "event_id_implausible_jump",
                    event_id=event_id,
                    current_event_id=turn.event_id,
                    max_jump=MAX_EVENT_ID_JUMP,
                )
                return

        previous: asyncio.Task[None] | None = None
        if turn is not None:
            if turn.running:
                log_after_queued_work(
                    self.log, "info", "turn_interrupted", event_id=turn.event_id, by_event_id=event_id
                )
                self._metrics.interruption(self.runtime_name)
            turn.supersede()
            if turn.task is not None and not turn.task.done():
                turn.task.cancel()
                previous = turn.task
        new = Turn(
            event_id,
            outbox=self._outbox,
            settings=self._settings.turn,
            log=self.log,
            metrics=self._metrics,
            runtime_name=self.runtime_name,
            progress=self._progress,
        )
        self._metrics.turn_started(self.runtime_name)
        self.current = new
        new.task = asyncio.get_running_loop().create_task(
            self._run_turn(new, message, previous), name=f"turn-{self.conversation_id}-{event_id}"
        )
        if self._start_line is not None:
            # After the first turn's first step (its first chunk, when the runtime answers at once).
            self._start_line.cancel()
            self._start_line = None
            log_after_queued_work(
                self.log, "info", "conversation_started", runtime=self.runtime_name, language=self.language
            )

    # --- lifecycle -------------------------------------------------------------------------------

    def _start(self, conversation_id: str) -> None:
        self.conversation_id = conversation_id
        self.log = _LOG.bind(conversation_id=conversation_id)
        self._outbox.log = self.log
        structlog.contextvars.bind_contextvars(conversation_id=conversation_id)
        # ElevenLabs may send the first transcript right behind ``init``: rendering this line now
        # would come before that turn's first chunk. It is written after the first turn's first
        # step instead, or after a short wait if no transcript comes (or at close, if that is sooner).
        self._start_line = asyncio.get_running_loop().call_later(_START_LINE_WAIT_S, self._log_started)
        if self._language_rejected is not None:
            self.log.warning("language_header_unsupported", value=self._language_rejected, language=self.language)
            self._language_rejected = None
        self._session_task = self.spawn(self._open_session())

    def _log_started(self) -> None:
        self._start_line = None
        self.log.info("conversation_started", runtime=self.runtime_name, language=self.language)

    async def _open_session(self) -> RuntimeSession:
        assert self.conversation_id is not None
        context = ConversationContext(
            conversation_id=self.conversation_id,
            settings=self._settings,
            record=self.record,
            boundary=self.boundary,
            language=self.language,
        )
        try:
            session = await self._runtime.open_session(context)
        except Exception:
            self.log.exception("runtime_session_open_failed", runtime=self.runtime_name)
            raise
        self._started = True
        await self._hooks.conversation_started(self)
        # From now on the session itself is kept, not the task (nor its coroutine) that opened it.
        self._session_value = session
        self._session_task = None
        return session

    async def runtime_session(self) -> RuntimeSession:
        """The runtime session, once the task opening it (started by ``init``) is done."""
        if self._session_value is not None:
            return self._session_value
        task = self._session_task
        assert task is not None
        if task.done():
            return task.result()
        # Shielded: an interrupted turn must not cancel the session being opened for the next.
        return await asyncio.shield(task)

    async def close(self, reason: str) -> None:
        """End the conversation: cancel and await every task, deny what is pending, close the session."""
        if self._closed:
            return
        self._closed = True
        self.ended_reason = reason
        if self._start_line is not None:
            self._start_line.cancel()
            self._log_started()
        turn = self.current
        if turn is not None:
            turn.supersede()
            if turn.task is not None and not turn.task.done():
                turn.task.cancel()
                await self.settle(turn.task)
        await self._outbox.aclose()
        await self._pending.close()
        session = await self._close_session_task()
        # Bounded, like settle(): a runtime that ignores cancellation must not keep the conversation
        # (its socket, its max_conversations slot) open for good.
        stuck = await cancel_and_wait(list(self._tasks or ()), self._settings.turn.cancel_grace_s)
        if stuck:
            self.log.error("runtime_ignored_cancellation", grace_s=self._settings.turn.cancel_grace_s, tasks=len(stuck))
        if session is not None:
            try:
                await session.aclose()
            except Exception:
                self.log.exception("runtime_session_close_failed")
        self.log.info(
            "conversation_ended", reason=reason, sent=self._outbox.frames_sent, dropped=self._outbox.frames_dropped
        )
        self._metrics.conversation_closed(self.runtime_name, self._outbox.frames_superseded)
        if self._started:
            await self._hooks.conversation_ended(self, reason)

    async def _close_session_task(self) -> RuntimeSession | None:
        if self._session_value is not None:
            return self._session_value
        task = self._session_task
        if task is None:
            return None
        if not task.done():
            await asyncio.wait({task}, timeout=self._settings.turn.cancel_grace_s)
            if not task.done():
                await cancel_and_wait({task}, self._settings.turn.cancel_grace_s)
                return None
        if task.cancelled() or task.exception() is not None:
            return None
        return task.result()

    # --- one turn ----------------------------------------------------------------------------------

    async def _run_turn(self, turn: Turn, message: UserTranscriptMessage, previous: asyncio.Task[None] | None) -> None:
        # conversation_id is inherited from the receive loop's context; runtime adapters' own
        # log lines get the event_id from here.
        structlog.contextvars.bind_contextvars(event_id=turn.event_id)
        if (previous is not None and not previous.done()) or self._session_value is None:
            # A wait before the runtime's stream (the interrupted run stopping, the session opening): the
            # filler's deadline runs from now. Otherwise speak() arms it, and a runtime that answers at once
            # costs no timer (one per turn, kept in the loop's heap until its deadline, showed in the tail
            # latency at 2,000 conversations).
            turn.arm_filler()
        if previous is not None:
            # Usually done already: it was cancelled before this task was created, so its
            # cancellation ran first (_settle then waits for nothing).
            await self.settle(previous)
        try:
            utterance = read_transcript(
                message.user_transcript,
                boundary=self.boundary,
                max_chars=self._settings.input.max_turn_chars,
                max_history_items=self._settings.input.max_history_items,
                language=self.language,
            )
            self._log_anomalies(turn, utterance)
            self.record.reconcile_last_reply(utterance.heard_reply)
            if NOTHING_NEW in utterance.flags:
                # Nothing new from the caller, so nothing to answer: the turn ends empty.
                turn.log.info("transcript_ends_with_agent", action="nothing_to_answer")
                await turn.finish()
                return
            await self._pending.end_unanswered(turn)
            if self._pending.awaiting is not None:
                turn.arm_filler()  # telling the runtime the answer may take a round trip before it speaks
                # No agent item before the caller's words: nothing of the last reply, the question, was heard.
                last = self.record.last_assistant()
                heard = last.text if last is not None and utterance.heard_reply is not None else ""
                await self._pending.answer(turn, utterance, heard=heard)
            else:
                await self._respond(turn, utterance)
            await turn.finish()
        except asyncio.CancelledError:
            raise
        except Exception:
            turn.log.exception("turn_failed")
            if turn.running:
                await turn.say(self._settings.turn.apology_text)
                await turn.finish()
        finally:
            # Ended: what only a running turn needs goes (an idle conversation keeps its last turn).
            turn.release()
            # After finish(): the record holds everything sent, including text flushed at the end.
            if turn.spoken:
                self.record.add_assistant(
                    turn.text,
                    turn.event_id,
                    interrupted=turn.state is TurnState.SUPERSEDED,
                    channel_phrases=turn.channel_phrases,
                )
            # A finished turn keeps no task (nor the task its coroutine and name): an idle
            # conversation holds only its last turn's state. Nothing waits on it any more.
            turn.task = None

    async def _respond(self, turn: Turn, utterance: Utterance) -> None:
        if not utterance.text:
            turn.log.info("turn_without_user_text")
            return
        if self._turns.acquire() is not None:
            turn.log.warning("turn_rate_limited", per_minute=self._settings.input.max_turns_per_minute)
            await turn.say(vocabulary(self.language).phrases.slow_down)
            return
        if utterance.intent in (Intent.STOP, Intent.CANCEL):
            turn.log.info("intent", intent=utterance.intent.value)
            return
        if utterance.intent is Intent.REPEAT:
            turn.log.info("intent", intent=utterance.intent.value)
            last = self.record.last_assistant()
            await turn.say(last.text if last is not None else vocabulary(self.language).phrases.nothing_to_repeat)
            return
        session = self._session_value
        if session is None:
            session = await self.runtime_session()
        assert self.conversation_id is not None
        message = to_runtime_message(
            utterance, conversation_id=self.conversation_id, event_id=turn.event_id, boundary=self.boundary
        )
        if self._hooks.has_transcript_hooks:
            verdict = await self._hooks.transcript(message, self)
            if isinstance(verdict, Refusal):
                turn.log.info("transcript_vetoed")
                await turn.say(verdict.text)
                return
            message = self._reapply_boundary(message, verdict)
        try:
            run = Run(session.respond(message))
            await self._pending.speak(turn, run)
            if run.closed and not turn.runtime_output and turn.running:
                # The runtime ended without a word (it dropped or queued the message): never an
                # empty final, and never just the filler.
                turn.log.warning("runtime_reply_empty", runtime=self.runtime_name)
                await turn.say(self._settings.turn.apology_text)
        finally:
            # The record holds what came *before* the message while the runtime answers it.
            self.record.add_user(message.text, turn.event_id)

    # --- helpers -------------------------------------------------------------------------------------

    def _reapply_boundary(self, original: RuntimeMessage, replacement: RuntimeMessage) -> RuntimeMessage:
        """A hook's replacement goes through the trust boundary again and keeps the provenance."""
        if replacement is original:
            return original
        text, flags, _removed = clean_text(
            replacement.text, boundary=self.boundary, max_chars=self._settings.input.max_turn_chars
        )
        return RuntimeMessage(
            text=text,
            conversation_id=original.conversation_id,
            event_id=original.event_id,
            boundary=original.boundary,
            intent=original.intent,
            flags=original.flags | flags | {"transformed"},
        )

    def _log_anomalies(self, turn: Turn, utterance: Utterance) -> None:
        if utterance.skipped_items:
            turn.log.warning("history_items_skipped", count=utterance.skipped_items)
        suspicious = utterance.flags - {"malformed_items", "no_user_text", NOTHING_NEW}
        if suspicious:
            turn.log.warning("untrusted_input_anomaly", flags=sorted(suspicious), removed_chars=utterance.removed_chars)

    async def settle(self, task: asyncio.Task[Any]) -> None:
        """Wait (bounded) for a cancelled task to finish; a runtime that ignores cancellation is logged."""
        if task.done():
            done = True
        else:
            finished, _pending = await asyncio.wait({task}, timeout=self._settings.turn.cancel_grace_s)
            done = bool(finished)
        if not done:
            self.log.error("runtime_ignored_cancellation", grace_s=self._settings.turn.cancel_grace_s)
            self._own(task)
        elif not task.cancelled() and task.exception() is not None:
            self.log.error("task_failed", error=repr(task.exception()))

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` as a task this conversation owns: :meth:`close` cancels and awaits it."""
        task = asyncio.get_running_loop().create_task(coro)
        self._own(task)
        return task

    def _own(self, task: asyncio.Task[Any]) -> None:
        if self._tasks is None:
            self._tasks = set()
        self._tasks.add(task)
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[Any]) -> None:
        tasks = self._tasks
        if tasks is not None:
            tasks.discard(task)
            if not tasks:
                self._tasks = None  # an idle conversation keeps no empty set
