"""The turn engine: one :class:`Conversation` per Speech Engine WebSocket.

For a ``user_transcript`` with ``event_id`` E, while the current turn T has id T.e:

* E == T.e and T running → a re-send by ElevenLabs (no text came in time): keep going;
* E == T.e and T finished → re-send T's whole reply, ending with ``is_final``;
* E < T.e → stale: dropped and logged;
* E > T.e, or no id → a new turn. T is superseded *synchronously* (nothing of it is written
  from this instant), its task is cancelled, and the new turn's task first waits for T's task,
  and with it the runtime's iterator, to finish closing. The receive loop never waits.
* E more than :data:`~voice_channel.protocol.MAX_EVENT_ID_JUMP` above T.e → refused and logged
  (an implausible jump would make every later genuine id look stale).

A transcript whose history ends with the agent's item has nothing new from the caller: its turn
ends with ``is_final`` and nothing else (logged ``transcript_ends_with_agent``).

A conversation owns at most one turn task, the runtime *run* (the iterator of
``RuntimeSession.respond``) that the turn speaks, and any run paused on a confirmation. A run
can outlive its turn: when the runtime asks for a confirmation the turn ends with the prompt,
and the run continues in the turn of the utterance that answered it (its reaction to a "no"
included). A confirmation that times out is denied while no turn is open: the runtime is told
(``resolve(..., deny)``) and its run is drained *silently*, since nothing a denied run says may
be spoken later, under any ``event_id``. The protocol cannot speak outside a turn, so the next
turn starts with one short sentence of the channel's own about it, then stops that run.
:meth:`Conversation.close` cancels and awaits all of it and closes the runtime session.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Coroutine, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from voice_channel.confirmations import Answer, ConfirmationPolicy, PendingConfirmation, base_policy
from voice_channel.metrics import NO_METRICS, Metrics
from voice_channel.outbox import Frame, Outbox
from voice_channel.protocol import MAX_EVENT_ID_JUMP, UserTranscriptMessage
from voice_channel.ratelimit import RateLimiter
from voice_channel.record import ConversationRecord
from voice_channel.runtime import (
    ConfirmationDecision,
    ConfirmationRequest,
    ConversationContext,
    Intent,
    Notice,
    Refusal,
    Runtime,
    RuntimeMessage,
    RuntimeSession,
    TextDelta,
)
from voice_channel.speech import extract_text
from voice_channel.turn import Turn, TurnState
from voice_channel.untrusted import (
    NOTHING_NEW,
    Utterance,
    clean_text,
    new_boundary,
    read_transcript,
    to_runtime_message,
)

if TYPE_CHECKING:
    from voice_channel.plugins import PluginHooks
    from voice_channel.settings import Settings

__all__ = ["Conversation"]

_SLOW_DOWN = "Please slow down a little; I can only take so many requests at once."
_NOTHING_TO_REPEAT = "I haven't said anything yet."
_NEVER_BY_VOICE = "I can't approve that by voice, so I won't do it."
#: Said at the start of the turn after a confirmation timed out (the protocol has no way to speak
#: between turns); the denied run's own words after the denial are never spoken.
NO_ANSWER_IN_TIME = "I didn't hear an answer in time, so I didn't do it."


@dataclass(eq=False)
class _Run:
    """A runtime's reply stream, possibly spanning turns."""

    events: AsyncIterator[Any]
    closed: bool = False

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        aclose = getattr(self.events, "aclose", None)
        if aclose is not None:
            await aclose()


@dataclass(eq=False)
class _Paused:
    """A run paused on a confirmation request, waiting for the caller's answer."""

    run: _Run
    confirmation: PendingConfirmation
    timer: asyncio.TimerHandle | None = None


@dataclass(eq=False)
class _Unanswered:
    """A run whose confirmation timed out: denied, then drained silently until the next turn."""

    run: _Run
    #: Sends the denial; never cancelled by the next turn, so the runtime always learns of it.
    denial: asyncio.Task[None] | None = None
    #: Reads (and drops) what the run says after the denial.
    drain: asyncio.Task[None] | None = None


class Conversation:
    """State and turn engine of one conversation. Created by the endpoint per WebSocket."""

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
        #: The upgrade request's headers, without authorization or shared-secret headers.
        self.handshake_headers: Mapping[str, str] = dict(handshake_headers or {})
        self.record = ConversationRecord()
        self.boundary = new_boundary()
        self.current: Turn | None = None
        self.started_at = time.time()
        self.ended_reason: str | None = None
        self.log: structlog.typing.FilteringBoundLogger = structlog.get_logger("voice_channel.conversation")
        self._runtime = runtime
        self._hooks = hooks
        self._settings = settings
        self._outbox = outbox
        self._metrics = metrics
        self._turns = RateLimiter(settings.input.max_turns_per_minute, max_clients=1)
        self._session_task: asyncio.Task[RuntimeSession] | None = None
        self._paused: _Paused | None = None
        self._unanswered: _Unanswered | None = None
        #: A confirmation timed out since the last turn began: the next turn says so first.
        self._no_answer_to_say = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False
        #: The runtime session opened and ``conversation_started`` was announced.
        self._started = False

    # --- inbound, called by the receive loop (never blocks) ---------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def awaiting_confirmation(self) -> ConfirmationRequest | None:
        """The request the next utterance will answer, if any."""
        return self._paused.confirmation.request if self._paused is not None else None

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
                    self.log.info("transcript_resent", event_id=event_id, action="continue")
                else:
                    self.log.info("transcript_resent", event_id=event_id, action="replay")
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
                self.log.info("turn_interrupted", event_id=turn.event_id, by_event_id=event_id)
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
        )
        self._metrics.turn_started(self.runtime_name)
        self.current = new
        new.task = asyncio.get_running_loop().create_task(
            self._run_turn(new, message, previous), name=f"turn-{self.conversation_id}-{event_id}"
        )

    # --- lifecycle -------------------------------------------------------------------------------

    def _start(self, conversation_id: str) -> None:
        self.conversation_id = conversation_id
        self.log = self.log.bind(conversation_id=conversation_id)
        self._outbox.log = self.log
        structlog.contextvars.bind_contextvars(conversation_id=conversation_id)
        self.log.info("conversation_started", runtime=self.runtime_name)
        self._session_task = self._spawn(self._open_session())

    async def _open_session(self) -> RuntimeSession:
        assert self.conversation_id is not None
        context = ConversationContext(
            conversation_id=self.conversation_id,
            settings=self._settings,
            record=self.record,
            boundary=self.boundary,
        )
        try:
            session = await self._runtime.open_session(context)
        except Exception:
            self.log.exception("runtime_session_open_failed", runtime=self.runtime_name)
            raise
        self._started = True
        await self._hooks.conversation_started(self)
        return session

    async def _session(self) -> RuntimeSession:
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
        turn = self.current
        if turn is not None:
            turn.supersede()
            if turn.task is not None and not turn.task.done():
                turn.task.cancel()
                await self._settle(turn.task)
        await self._outbox.aclose()
        if self._paused is not None:
            paused, self._paused = self._paused, None
            await self._decide_and_close(paused, ConfirmationDecision(False, "closed"))
        if self._unanswered is not None:
            await self._end_unanswered()
        session = await self._close_session_task()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
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
        task = self._session_task
        if task is None:
            return None
        if not task.done():
            await asyncio.wait({task}, timeout=self._settings.turn.cancel_grace_s)
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
                return None
        if task.cancelled() or task.exception() is not None:
            return None
        return task.result()

    # --- one turn ----------------------------------------------------------------------------------

    async def _run_turn(self, turn: Turn, message: UserTranscriptMessage, previous: asyncio.Task[None] | None) -> None:
        # conversation_id is inherited from the receive loop's context; runtime adapters' own
        # log lines get the event_id from here.
        structlog.contextvars.bind_contextvars(event_id=turn.event_id)
        if previous is not None:
            await self._settle(previous)
        try:
            utterance = read_transcript(
                message.user_transcript,
                boundary=self.boundary,
                max_chars=self._settings.input.max_turn_chars,
                max_history_items=self._settings.input.max_history_items,
            )
            self._log_anomalies(turn, utterance)
            self.record.reconcile_last_reply(utterance.heard_reply)
            if NOTHING_NEW in utterance.flags:
                # Nothing new from the caller, so nothing to answer: the turn ends empty.
                turn.log.info("transcript_ends_with_agent", action="nothing_to_answer")
                await turn.finish()
                return
            if self._unanswered is not None:
                await self._end_unanswered()
            if self._no_answer_to_say:
                # Cleared only here: a turn interrupted before this point leaves it to the next.
                self._no_answer_to_say = False
                await turn.say(NO_ANSWER_IN_TIME + " ")
            if self._paused is not None:
                await self._answer_confirmation(turn, utterance)
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
            # After finish(): the record holds everything sent, including text flushed at the end.
            if turn.spoken:
                self.record.add_assistant(turn.text, turn.event_id, interrupted=turn.state is TurnState.SUPERSEDED)

    async def _respond(self, turn: Turn, utterance: Utterance) -> None:
        if not utterance.text:
            turn.log.info("turn_without_user_text")
            return
        if self._turns.acquire("turns") is not None:
            turn.log.warning("turn_rate_limited", per_minute=self._settings.input.max_turns_per_minute)
            await turn.say(_SLOW_DOWN)
            return
        if utterance.intent in (Intent.STOP, Intent.CANCEL):
            turn.log.info("intent", intent=utterance.intent.value)
            return
        if utterance.intent is Intent.REPEAT:
            turn.log.info("intent", intent=utterance.intent.value)
            last = self.record.last_assistant()
            await turn.say(last.text if last is not None else _NOTHING_TO_REPEAT)
            return
        task = self._session_task
        session = task.result() if task is not None and task.done() else await self._session()
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
            run = _Run(session.respond(message))
            await self._speak_run(turn, run)
            if run.closed and not turn.runtime_output and turn.running:
                # The runtime ended without a word (it dropped or queued the message): never an
                # empty final, and never just the filler.
                turn.log.warning("runtime_reply_empty", runtime=self.runtime_name)
                await turn.say(self._settings.turn.apology_text)
        finally:
            # The record holds what came *before* the message while the runtime answers it.
            self.record.add_user(message.text, turn.event_id)

    async def _speak_run(self, turn: Turn, run: _Run) -> None:
        """Speak ``run`` in ``turn`` until it ends or pauses on a confirmation."""
        try:
            while True:
                request = await turn.speak(run.events)
                if request is None:
                    await run.aclose()
                    return
                if await self._pause_for_confirmation(turn, run, request):
                    return
        except BaseException:
            if self._paused is None or self._paused.run is not run:
                await self._close_run(run)
            raise

    # --- confirmations -----------------------------------------------------------------------------

    async def _pause_for_confirmation(self, turn: Turn, run: _Run, request: ConfirmationRequest) -> bool:
        """Ask the caller; return False if the run goes on in this turn (refused by policy)."""
        try:
            policies = await self._hooks.confirmation_policies(request, self)
        except asyncio.CancelledError:
            # Interrupted before the caller was even asked: the request is denied, not left hanging.
            await self._resolve(request, ConfirmationDecision(False, "superseded"))
            raise
        policy = max([base_policy(request), *policies])
        log = turn.log.bind(request_id=request.id, risk=request.risk, policy=policy.name.lower())
        if policy is ConfirmationPolicy.NEVER:
            log.info("confirmation_refused_by_policy")
            await turn.say(_NEVER_BY_VOICE + " ")
            await self._resolve(request, ConfirmationDecision(False, "policy"))
            return False
        if self._paused is not None:
            stale, self._paused = self._paused, None
            await self._decide_and_close(stale, ConfirmationDecision(False, "superseded"))
        confirmation = PendingConfirmation.open(request, policy, self._settings.confirmations.timeout_s)
        paused = _Paused(run, confirmation)
        paused.timer = asyncio.get_running_loop().call_later(
            self._settings.confirmations.timeout_s, self._on_confirmation_timeout, paused
        )
        self._paused = paused
        log.info("confirmation_requested")
        self._metrics.confirmation("asked")
        await turn.say(confirmation.prompt())
        return True

    async def _answer_confirmation(self, turn: Turn, utterance: Utterance) -> None:
        paused = self._paused
        assert paused is not None
        confirmation = paused.confirmation
        expired = confirmation.expired
        if expired or utterance.intent in (Intent.STOP, Intent.CANCEL):
            answer = Answer.DENY
        else:
            answer = confirmation.parse(utterance.text, truncated="truncated" in utterance.flags)
        log = turn.log.bind(request_id=confirmation.request.id)
        if answer is Answer.UNCLEAR and confirmation.asked < 2:
            confirmation.asked += 1
            log.info("confirmation_reasked")
            await turn.say(confirmation.prompt(reask=True))
            return
        self._paused = None
        if paused.timer is not None:
            paused.timer.cancel()
        reason = "timeout" if expired else "doubt" if answer is Answer.UNCLEAR else "user"
        decision = ConfirmationDecision(answer is Answer.APPROVE, reason)
        self._metrics.confirmation("timed_out" if expired else "approved" if decision.approved else "denied")
        await self._resolve(confirmation.request, decision)
        await self._speak_run(turn, paused.run)

    def _on_confirmation_timeout(self, paused: _Paused) -> None:
        # Timer callback: no answer in time, and no turn is open to say so. Deny, and let the run
        # react to the denial unheard.
        if self._paused is not paused or self._closed:
            return
        self._paused = None
        self._metrics.confirmation("timed_out")
        unanswered = _Unanswered(paused.run)
        self._unanswered = unanswered
        self._no_answer_to_say = True
        unanswered.denial = self._spawn(
            self._resolve_or_log(paused.confirmation.request, ConfirmationDecision(False, "timeout"))
        )
        unanswered.drain = self._spawn(self._drain(unanswered))

    async def _drain(self, unanswered: _Unanswered) -> None:
        """Read what a denied run says while no turn is open, and drop it."""
        assert unanswered.denial is not None
        # The run resumes only once the runtime has the decision (asyncio.wait never cancels it).
        await asyncio.wait({unanswered.denial})
        dropped = 0
        try:
            async for event in unanswered.run.events:
                if isinstance(event, ConfirmationRequest):
                    # Nobody is listening to ask: a new request of the denied run is denied too.
                    await self._resolve(event, ConfirmationDecision(False, "superseded"))
                elif isinstance(event, TextDelta):
                    dropped += len(event.text)
                elif not isinstance(event, Notice):
                    dropped += len(extract_text(event) or "")
        except Exception:
            self.log.exception("denied_run_failed")
        finally:
            self.log.info("denied_run_unspoken", reason="timeout", dropped_chars=dropped)
            await self._close_run(unanswered.run)

    async def _end_unanswered(self) -> None:
        """Make sure the runtime has the denial, then stop the drained run."""
        unanswered, self._unanswered = self._unanswered, None
        if unanswered is None:
            return
        if unanswered.denial is not None:
            done, _pending = await asyncio.wait({unanswered.denial}, timeout=self._settings.turn.cancel_grace_s)
            if not done:  # still owned by self._tasks: close() awaits it
                self.log.warning("confirmation_resolve_slow", grace_s=self._settings.turn.cancel_grace_s)
        if unanswered.drain is not None and not unanswered.drain.done():
            unanswered.drain.cancel()
            await self._settle(unanswered.drain)
        await self._close_run(unanswered.run)

    async def _resolve(self, request: ConfirmationRequest, decision: ConfirmationDecision) -> None:
        session = await self._session()
        self.log.info(
            "confirmation_decided",
            request_id=request.id,
            approved=decision.approved,
            reason=decision.reason,
        )
        await session.resolve(request.id, decision)

    async def _resolve_or_log(self, request: ConfirmationRequest, decision: ConfirmationDecision) -> None:
        try:
            await self._resolve(request, decision)
        except Exception:
            self.log.exception("confirmation_resolve_failed", request_id=request.id)

    async def _decide_and_close(self, paused: _Paused, decision: ConfirmationDecision) -> None:
        if paused.timer is not None:
            paused.timer.cancel()
        await self._resolve_or_log(paused.confirmation.request, decision)
        await self._close_run(paused.run)

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

    async def _close_run(self, run: _Run) -> None:
        try:
            await run.aclose()
        except Exception:
            self.log.exception("runtime_stream_close_failed")

    async def _settle(self, task: asyncio.Task[Any]) -> None:
        """Wait (bounded) for a cancelled task to finish; a runtime that ignores cancellation is logged."""
        done, _pending = await asyncio.wait({task}, timeout=self._settings.turn.cancel_grace_s)
        if not done:
            self.log.error("runtime_ignored_cancellation", grace_s=self._settings.turn.cancel_grace_s)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif not task.cancelled() and task.exception() is not None:
            self.log.error("task_failed", error=repr(task.exception()))

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
