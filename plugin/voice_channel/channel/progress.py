"""Progress speech: what the caller hears while the runtime runs a tool.

A runtime that starts a tool reports it with a :class:`~voice_channel.runtime.ToolActivity`; until
the tool is done and the runtime talks again, the caller would hear nothing. Per turn, a
:class:`ProgressSpeaker` fills that silence, within the ``progress`` settings:

* ``delay_s`` after the first tool started, if it still runs and nothing was said since it
  started, a *start* phrase ("Let me check that."), once per turn;
* then every ``interval_s`` while a tool keeps running, a *progress* line ("Still working on it."),
  at most ``max_lines`` per turn;
* never over text that may still be playing: nothing while the turn holds text it has not sent yet,
  nor within ``quiet_s`` of the last text sent (a skipped start phrase is not said later, a
  skipped progress line waits for the next interval);
* nothing once the turn is superseded (an interruption), finished, or paused on a confirmation:
  the speaker is owned by the turn, which cancels and awaits it.

The words come from the ``voice_channel_progress_phrase`` hook, else from the settings' phrase
lists, varied: each list is said in a shuffled order, reshuffled when used up, never the same
phrase twice in a row (a :class:`PhraseSource` per conversation; seedable for tests). Progress
phrases go out through the turn's normal path (:meth:`~voice_channel.channel.turn.Turn.say_progress`),
so they are part of the reply, its record and its first-chunk latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, Protocol

from voice_channel.runtime import ToolActivity, ToolPhase

if TYPE_CHECKING:
    import structlog

    from voice_channel.contract import ConversationInfo
    from voice_channel.plugins import PluginHooks
    from voice_channel.settings import ProgressSettings

__all__ = ["Clock", "LoopClock", "PhraseSource", "ProgressKind", "ProgressSpeaker", "SpeakingTurn"]

ProgressKind = Literal["start", "progress"]


class Clock(Protocol):
    """Time as the progress speaker sees it (the event loop's clock; a manual one in tests)."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class LoopClock:
    """The running event loop's monotonic clock."""

    __slots__ = ()

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class SpeakingTurn(Protocol):
    """What a :class:`ProgressSpeaker` needs of its turn (:class:`~voice_channel.channel.turn.Turn`)."""

    @property
    def running(self) -> bool:
        """The turn may still speak (not finished, not superseded)."""
        ...

    @property
    def last_sent_at(self) -> float | None:
        """When (on the speaker's clock) the turn last sent text, or ``None``."""
        ...

    def say_progress(self, text: str) -> bool:
        """Send ``text`` now unless the turn holds unsent text or cannot speak; whether it was sent."""
        ...


#: Shared by every conversation's phrases (it holds nothing).
_LOOP_CLOCK = LoopClock()


class _Rotation:
    """Phrases in a shuffled order, reshuffled when used up, never the same one twice in a row."""

    def __init__(self, phrases: Sequence[str], rng: random.Random) -> None:
        self._phrases = list(phrases)
        self._rng = rng
        self._bag: list[str] = []
        self._last: str | None = None

    def next(self) -> str:
        if not self._bag:
            self._bag = self._phrases[:]
            self._rng.shuffle(self._bag)
            if len(self._bag) > 1 and self._bag[-1] == self._last:
                # The bag is used from its end: the one just said must not come first again.
                self._bag[0], self._bag[-1] = self._bag[-1], self._bag[0]
        self._last = self._bag.pop()
        return self._last


class PhraseSource:
    """A conversation's progress phrases: a plugin's (the hook) or the built-in ones, varied.

    :param seed: makes the built-in order reproducible (tests); by default it differs per conversation.
    :param clock: the clock of every turn's speaker (a manual one in tests).
    """

    # One per conversation with progress speech on (the default), and thousands stay open.
    __slots__ = ("_conversation", "_hooks", "_rotations", "_seed", "clock", "language", "settings")

    def __init__(
        self,
        settings: ProgressSettings,
        *,
        hooks: PluginHooks | None = None,
        conversation: ConversationInfo | None = None,
        seed: int | None = None,
        clock: Clock | None = None,
        language: str = "en",
    ) -> None:
        self.settings = settings
        #: The conversation's language (``confirmations.language`` or its header): picks the built-in phrases.
        self.language = language
        self.clock: Clock = clock or _LOOP_CLOCK
        self._hooks = hooks
        self._conversation = conversation
        self._seed = seed
        #: Built on first use: most conversations never run a tool (one per conversation, so keep it cheap).
        self._rotations: dict[str, _Rotation] | None = None

    async def phrase(self, kind: ProgressKind, *, tool: str, count: int, elapsed_s: float) -> tuple[str, str]:
        """The words to say (``""``: nothing) and where they came from (``plugin`` or ``builtin``)."""
        hooks = self._hooks
        if hooks is not None and hooks.has_progress_phrase_hooks:
            chosen = await hooks.progress_phrase(
                kind=kind, tool=tool, count=count, elapsed_s=elapsed_s, conversation=self._conversation
            )
            if chosen is not None:
                return " ".join(chosen.split()), "plugin"
        if self._rotations is None:
            rng = random.Random(self._seed)
            start, progress = self.settings.phrases_for(self.language)
            self._rotations = {
                "start": _Rotation(start, rng),
                "progress": _Rotation(progress, rng),
            }
        return self._rotations[kind].next(), "builtin"


class ProgressSpeaker:
    """One turn's progress speech (see the module docstring). Created by the turn on its first tool."""

    def __init__(self, source: PhraseSource, turn: SpeakingTurn, log: structlog.typing.FilteringBoundLogger) -> None:
        self._source = source
        self._settings = source.settings
        self._clock = source.clock
        self._turn = turn
        self._log = log
        #: Tools running now, by call id (or name when the runtime gives no id), with their names.
        self._active: dict[str, str] = {}
        #: When the running tools began (the first of them, if they overlap).
        self._since = 0.0
        self._start_done = False
        self._lines = 0
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def running_tools(self) -> tuple[ToolActivity, ...]:
        """The tools started and not ended yet, as their ``START`` events (to carry into a later turn)."""
        return tuple(
            ToolActivity(ToolPhase.START, tool, None if key == tool else key) for key, tool in self._active.items()
        )

    @property
    def lines(self) -> int:
        """Progress lines said (or left silent by a plugin) in this turn, the start phrase aside."""
        return self._lines

    async def on_tool(self, activity: ToolActivity) -> None:
        """A tool started or ended in this turn's run."""
        key = activity.call_id or activity.tool
        if activity.phase is ToolPhase.START:
            if self._closed:
                return
            if not self._active:
                self._since = self._clock.now()
            self._active[key] = activity.tool
            if self._task is None:
                self._task = asyncio.get_running_loop().create_task(self._run(), name="progress-speech")
            return
        if self._active.pop(key, None) is None:
            self._log.debug("tool_end_without_start", tool=activity.tool)
            return
        if not self._active:
            await self._stop()

    def cancel(self) -> None:
        """Synchronously stop speaking (the turn was superseded); :meth:`aclose` awaits the task."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()

    async def aclose(self) -> None:
        """Stop for good: cancel and await the speaking task."""
        self._closed = True
        self._active.clear()
        await self._stop()

    async def _stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        """Say what is due while tools run; ends when they all have (cancelled) or nothing is left to say."""
        try:
            await self._speak_while_tools_run()
        except asyncio.CancelledError:
            raise
        except Exception:
            # A failing phrase source must not fail the turn: the caller just hears no progress.
            self._log.exception("progress_speech_failed")

    async def _speak_while_tools_run(self) -> None:
        settings = self._settings
        since = self._since
        due = since + (settings.interval_s if self._start_done else settings.delay_s)
        while True:
            await self._clock.sleep(max(0.0, due - self._clock.now()))
            kind: ProgressKind = "progress" if self._start_done else "start"
            if not self._turn.running or (kind == "progress" and self._lines >= settings.max_lines):
                return
            now = self._clock.now()
            last = self._turn.last_sent_at
            due += settings.interval_s
            if last is not None and (now - last < settings.quiet_s or (kind == "start" and last >= since)):
                # Text may still be playing, or the runtime already told the caller something since the
                # tool started: the start phrase is dropped, a progress line waits for the next interval.
                self._start_done = True
                self._log.debug("progress_skipped", kind=kind, reason="recent_text")
                continue
            tool = next(iter(self._active.values()), "")
            count = 0 if kind == "start" else self._lines + 1
            text, origin = await self._source.phrase(kind, tool=tool, count=count, elapsed_s=now - since)
            if kind == "start":
                self._start_done = True
            else:
                self._lines += 1
            if not text:
                self._log.info("progress_silenced", kind=kind, count=count, tool=tool)
                continue
            if self._turn.last_sent_at != last:
                # The hook took a while and the runtime spoke meanwhile: never stack a phrase on it.
                self._log.debug("progress_skipped", kind=kind, reason="recent_text")
                continue
            if self._turn.say_progress(text):
                self._log.info(
                    "progress_spoken",
                    kind=kind,
                    count=count,
                    tool=tool,
                    origin=origin,
                    elapsed_ms=round((now - since) * 1000),
                )
            else:
                self._log.debug("progress_skipped", kind=kind, reason="turn_busy")
