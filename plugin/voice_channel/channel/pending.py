"""The run that outlives its turn: a runtime's reply stream paused on a spoken confirmation.

A conversation's turn speaks one *run* (the iterator of ``RuntimeSession.respond``). When the
runtime asks for a confirmation, the turn ends with the prompt and the run waits here, paused,
for the caller's answer; it goes on in the turn of the utterance that answered it (its reaction
to a "no" included). A confirmation that times out is denied while no turn is open: the runtime
is told (``resolve(..., deny)``) and its run is drained *silently*, since nothing a denied run
says may be spoken later, under any ``event_id``. The protocol cannot speak outside a turn, so
the next turn starts with :data:`NO_ANSWER_IN_TIME`, then stops that run.

The words and the answer parser live in :mod:`voice_channel.channel.confirmations`; this module holds
the state (paused, unanswered), the timer and the flow: pause, answer, decide, close.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from voice_channel.channel.confirmations import Answer, PendingConfirmation, base_policy
from voice_channel.channel.languages import ENGLISH, Phrases, vocabulary
from voice_channel.channel.speech import extract_text
from voice_channel.contract import ConfirmationPolicy, ConversationInfo
from voice_channel.runtime import (
    ConfirmationDecision,
    ConfirmationRequest,
    Intent,
    Notice,
    RuntimeSession,
    TextDelta,
    ToolActivity,
)

if TYPE_CHECKING:
    import structlog

    from voice_channel.channel.turn import Turn
    from voice_channel.channel.untrusted import Utterance
    from voice_channel.plugins import PluginHooks
    from voice_channel.serving.metrics import Metrics
    from voice_channel.settings import Settings

__all__ = ["NO_ANSWER_IN_TIME", "PendingRuns", "Run", "RunOwner"]

#: Said (in the conversation's language) at the start of the turn after a confirmation timed out (the
#: protocol has no way to speak between turns); the denied run's own words after the denial are never spoken.
NO_ANSWER_IN_TIME = ENGLISH.phrases.timeout


class RunOwner(ConversationInfo, Protocol):
    """What :class:`PendingRuns` needs of the conversation that owns it."""

    @property
    def log(self) -> structlog.typing.FilteringBoundLogger:
        """The conversation's logger."""
        ...

    @property
    def closed(self) -> bool:
        """The conversation has been closed: nothing new may start."""
        ...

    async def runtime_session(self) -> RuntimeSession:
        """The conversation's runtime session (opened, or being opened)."""
        ...

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` as a task the conversation cancels and awaits on close."""
        ...

    async def settle(self, task: asyncio.Task[Any]) -> None:
        """Wait (bounded) for a cancelled task to finish."""
        ...


@dataclass(eq=False)
class Run:
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

    run: Run
    confirmation: PendingConfirmation
    timer: asyncio.TimerHandle | None = None
    #: Tools the run started before it asked (they run once approved, in the answering turn).
    tools: tuple[ToolActivity, ...] = ()


@dataclass(eq=False)
class _Unanswered:
    """A run whose confirmation timed out: denied, then drained silently until the next turn."""

    run: Run
    #: Sends the denial; never cancelled by the next turn, so the runtime always learns of it.
    denial: asyncio.Task[None] | None = None
    #: Reads (and drops) what the run says after the denial.
    drain: asyncio.Task[None] | None = None


class PendingRuns:
    """The run a conversation's turns speak, and the one (at most) paused on a confirmation.

    Owned by one conversation (:class:`RunOwner`): its tasks are started with the owner's ``spawn``
    (so its close cancels and awaits them) and a cancelled task is waited for with its ``settle``.
    """

    __slots__ = (
        "_hooks",
        "_metrics",
        "_no_answer_to_say",
        "_owner",
        "_paused",
        "_resolving",
        "_settings",
        "_unanswered",
    )

    def __init__(self, owner: RunOwner, *, hooks: PluginHooks, settings: Settings, metrics: Metrics) -> None:
        # One reference to the owner rather than its bound methods: thousands of conversations
        # stay open per process, each with its PendingRuns.
        self._owner = owner
        self._hooks = hooks
        self._settings = settings
        self._metrics = metrics
        self._paused: _Paused | None = None
        self._unanswered: _Unanswered | None = None
        #: Tells the runtime the caller's answer: a task of the conversation's, so that the turn being
        #: interrupted (the caller talks on, or hangs up) does not cut the runtime off from the decision.
        self._resolving: asyncio.Task[None] | None = None
        #: A confirmation timed out since the last turn began: the next turn says so first.
        self._no_answer_to_say = False

    @property
    def awaiting(self) -> ConfirmationRequest | None:
        """The request the next utterance will answer, if any."""
        return self._paused.confirmation.request if self._paused is not None else None

    async def speak(self, turn: Turn, run: Run, running_tools: tuple[ToolActivity, ...] = ()) -> None:
        """Speak ``run`` in ``turn`` until it ends or pauses on a confirmation (``running_tools``: see
        :meth:`Turn.speak`)."""
        try:
            while True:
                request = await turn.speak(run.events, running_tools=running_tools)
                running_tools = ()
                if request is None:
                    await run.aclose()
                    return
                if await self._pause(turn, run, request):
                    return
        except BaseException:
            if self._paused is None or self._paused.run is not run:
                await self._close_run(run)
            raise

    async def end_unanswered(self, turn: Turn) -> None:
        """At the start of a turn: if a confirmation timed out since the last, stop its run and say so."""
        if self._unanswered is not None:
            await self._end_unanswered()
        if self._no_answer_to_say:
            # Cleared only here: a turn interrupted before this point leaves it to the next.
            self._no_answer_to_say = False
            await turn.say(self._phrases.timeout + " ")

    async def answer(self, turn: Turn, utterance: Utterance, *, heard: str | None = None) -> None:
        """Route the caller's utterance to the paused confirmation; resume the run once decided.

        ``heard``: what the caller heard of the channel's last reply (the record's, cut to what ElevenLabs
        reports heard). An utterance made before the question was heard cannot approve it: asked again.
        """
        paused = self._paused
        assert paused is not None
        confirmation = paused.confirmation
        expired = confirmation.expired
        if expired or utterance.intent in (Intent.STOP, Intent.CANCEL):
            answer = Answer.DENY
        else:
            answer = confirmation.parse(utterance.text, truncated="truncated" in utterance.flags)
            if answer is Answer.APPROVE and heard is not None and not confirmation.asked_in(heard):
                turn.log.info("confirmation_not_heard", request_id=confirmation.request.id)
                answer = Answer.UNCLEAR
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
        resolving = self._resolving = self._owner.spawn(self._resolve(confirmation.request, decision))
        try:
            await asyncio.shield(resolving)
        except asyncio.CancelledError:
            # Superseded while the runtime was being told: it still is (the task goes on, and close()
            # waits for it), and the run, which no turn will speak any more, is closed.
            resolving.add_done_callback(self._log_resolve_failure)
            await self._close_run(paused.run)
            raise
        finally:
            if resolving.done():
                self._resolving = None  # an idle conversation keeps no finished task
        await self.speak(turn, paused.run, paused.tools if decision.approved else ())

    async def close(self) -> None:
        """Deny what is paused (``closed``) and stop a drained run; the runtime hears of both."""
        if self._resolving is not None and not self._resolving.done():
            # An answer on its way to the runtime when the conversation ended: let it arrive (bounded).
            await asyncio.wait({self._resolving}, timeout=self._settings.turn.cancel_grace_s)
        if self._paused is not None:
            paused, self._paused = self._paused, None
            await self._decide_and_close(paused, ConfirmationDecision(False, "closed"))
        if self._unanswered is not None:
            await self._end_unanswered()

    @property
    def _phrases(self) -> Phrases:
        """What the channel says, in the conversation's language."""
        return vocabulary(self._owner.language).phrases

    # --- the flow ----------------------------------------------------------------------------------

    async def _pause(self, turn: Turn, run: Run, request: ConfirmationRequest) -> bool:
        """Ask the caller; return False if the run goes on in this turn (refused by policy)."""
        try:
            policies = await self._hooks.confirmation_policies(request, self._owner)
        except asyncio.CancelledError:
            # Interrupted before the caller was even asked: the request is denied, not left hanging.
            await self._resolve(request, ConfirmationDecision(False, "superseded"))
            raise
        policy = max([base_policy(request), *policies])
        log = turn.log.bind(request_id=request.id, risk=request.risk, policy=policy.name.lower())
        if policy is ConfirmationPolicy.NEVER:
            log.info("confirmation_refused_by_policy")
            await turn.say(self._phrases.refusal + " ")
            await self._resolve(request, ConfirmationDecision(False, "policy"))
            return False
        if self._paused is not None:
            stale, self._paused = self._paused, None
            await self._decide_and_close(stale, ConfirmationDecision(False, "superseded"))
        confirmation = PendingConfirmation.open(
            request, policy, self._settings.confirmations.timeout_s, self._owner.language
        )
        paused = _Paused(run, confirmation, tools=turn.tools_running)
        paused.timer = asyncio.get_running_loop().call_later(
            self._settings.confirmations.timeout_s, self._on_timeout, paused
        )
        self._paused = paused
        log.info("confirmation_requested")
        self._metrics.confirmation("asked")
        await turn.say(confirmation.prompt())
        return True

    def _on_timeout(self, paused: _Paused) -> None:
        # Timer callback: no answer in time, and no turn is open to say so. Deny, and let the run
        # react to the denial unheard.
        if self._paused is not paused or self._owner.closed:
            return
        self._paused = None
        self._metrics.confirmation("timed_out")
        unanswered = _Unanswered(paused.run)
        self._unanswered = unanswered
        self._no_answer_to_say = True
        unanswered.denial = self._owner.spawn(
            self._resolve_or_log(paused.confirmation.request, ConfirmationDecision(False, "timeout"))
        )
        unanswered.drain = self._owner.spawn(self._drain(unanswered))

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
                elif not isinstance(event, (Notice, ToolActivity)):
                    dropped += len(extract_text(event) or "")
        except Exception:
            self._owner.log.exception("denied_run_failed")
        finally:
            self._owner.log.info("denied_run_unspoken", reason="timeout", dropped_chars=dropped)
            await self._close_run(unanswered.run)

    async def _end_unanswered(self) -> None:
        """Make sure the runtime has the denial, then stop the drained run."""
        unanswered, self._unanswered = self._unanswered, None
        if unanswered is None:
            return
        if unanswered.denial is not None:
            done, _pending = await asyncio.wait({unanswered.denial}, timeout=self._settings.turn.cancel_grace_s)
            if not done:  # still owned by the conversation's tasks: its close() awaits it
                self._owner.log.warning("confirmation_resolve_slow", grace_s=self._settings.turn.cancel_grace_s)
        if unanswered.drain is not None and not unanswered.drain.done():
            unanswered.drain.cancel()
            await self._owner.settle(unanswered.drain)
        await self._close_run(unanswered.run)

    async def _resolve(self, request: ConfirmationRequest, decision: ConfirmationDecision) -> None:
        session = await self._owner.runtime_session()
        self._owner.log.info(
            "confirmation_decided",
            request_id=request.id,
            approved=decision.approved,
            reason=decision.reason,
        )
        await session.resolve(request.id, decision)

    def _log_resolve_failure(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._owner.log.error("confirmation_resolve_failed", error=repr(task.exception()))

    async def _resolve_or_log(self, request: ConfirmationRequest, decision: ConfirmationDecision) -> None:
        try:
            await self._resolve(request, decision)
        except Exception:
            self._owner.log.exception("confirmation_resolve_failed", request_id=request.id)

    async def _decide_and_close(self, paused: _Paused, decision: ConfirmationDecision) -> None:
        if paused.timer is not None:
            paused.timer.cancel()
        await self._resolve_or_log(paused.confirmation.request, decision)
        await self._close_run(paused.run)

    async def _close_run(self, run: Run) -> None:
        try:
            await run.aclose()
        except Exception:
            self._owner.log.exception("runtime_stream_close_failed")
