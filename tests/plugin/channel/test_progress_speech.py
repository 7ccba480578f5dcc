"""Progress speech while a tool runs (issue 15, item 2): timing, never stacked, never after an
interruption, the hook, the settings.

The timing tests drive a real :class:`~voice_channel.channel.turn.Turn` with a manual clock: time
moves only when a test advances it, and each advance waits until the speaker is parked again
(sleeping on the clock, or done), so nothing here sleeps to synchronise.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
import structlog
import yaml
from structlog.testing import capture_logs

from support import ScriptedPlugin, conversation
from voice_channel import SettingsError, ToolActivity, ToolPhase, hookimpl
from voice_channel.channel.progress import PhraseSource, _Rotation
from voice_channel.channel.turn import Turn
from voice_channel.contract import LANGUAGE_CODES
from voice_channel.plugins import PluginHooks, get_plugin_manager
from voice_channel.runtime import ConfirmationRequest, TextDelta
from voice_channel.serving.metrics import Metrics
from voice_channel.settings import (
    BUILTIN_PROGRESS_PHRASES,
    DEFAULT_START_PHRASES,
    ProgressSettings,
    TurnSettings,
    load_settings,
)

START = DEFAULT_START_PHRASES


def start(tool: str = "terminal", call_id: str | None = "c1") -> ToolActivity:
    return ToolActivity(ToolPhase.START, tool, call_id)


def end(tool: str = "terminal", call_id: str | None = "c1") -> ToolActivity:
    return ToolActivity(ToolPhase.END, tool, call_id)


# --- the harness ---------------------------------------------------------------------------------


class ManualClock:
    """A clock that moves only when :meth:`advance` is called."""

    def __init__(self) -> None:
        self.t = 0.0
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []
        self._parked = asyncio.Event()

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((self.t + seconds, future))
        self._parked.set()
        try:
            await future
        finally:
            self._sleepers = [s for s in self._sleepers if s[1] is not future]


class StubOutbox:
    """The turn's outbox: records what would be written."""

    def __init__(self) -> None:
        self.frames: list[Any] = []

    async def send(self, frame: Any) -> None:
        self.frames.append(frame)

    def post(self, frame: Any) -> None:
        self.frames.append(frame)


class FirstChunks(Metrics):
    def __init__(self) -> None:
        self.first: list[float] = []

    def first_chunk(self, runtime: str, seconds: float) -> None:
        self.first.append(seconds)


class Harness:
    """One turn speaking a runtime stream the test feeds event by event, on a manual clock."""

    def __init__(self, progress: dict[str, Any] | None = None, *, hooks: PluginHooks | None = None, **turn: Any):
        self.clock = ManualClock()
        self.outbox = StubOutbox()
        self.metrics = FirstChunks()
        settings = ProgressSettings(
            **{"delay_s": 1.0, "interval_s": 8.0, "max_lines": 3, "quiet_s": 2.0, **(progress or {})}
        )
        self.source = PhraseSource(settings, hooks=hooks, conversation=None, seed=7, clock=self.clock)
        turn.setdefault("filler_enabled", False)
        self.turn = Turn(
            1,
            outbox=self.outbox,  # type: ignore[arg-type]
            settings=TurnSettings(**turn),
            log=structlog.get_logger("test"),
            metrics=self.metrics,
            progress=self.source,
        )
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self.result: asyncio.Task[Any] | None = None

    async def __aenter__(self) -> Harness:
        self.result = asyncio.get_running_loop().create_task(self.turn.speak(self._events()))
        self.turn.task = self.result
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.result is not None
        if not self.result.done():
            self.result.cancel()
        await asyncio.gather(self.result, return_exceptions=True)

    async def _events(self) -> AsyncIterator[Any]:
        while True:
            item = await self._queue.get()
            if item is None:
                self._queue.task_done()
                return
            yield item
            self._queue.task_done()  # the turn has handled it and asks for the next

    async def emit(self, *events: Any, park: bool = True) -> None:
        """Give the turn events and wait until it has handled them (and the speaker is parked)."""
        for event in events:
            self._queue.put_nowait(event)
        await self._queue.join()
        if park:
            await self._parked()

    async def end_stream(self) -> Any:
        self._queue.put_nowait(None)
        assert self.result is not None
        return await self.result

    async def advance(self, seconds: float) -> None:
        """Move the clock on, waking each sleeper in turn, and wait until the speaker is parked again."""
        target = self.clock.t + seconds
        while True:
            due = sorted((s for s in self.clock._sleepers if s[0] <= target + 1e-9), key=lambda s: s[0])
            if not due:
                break
            when, future = due[0]
            self.clock.t = max(self.clock.t, when)
            self.clock._sleepers.remove(due[0])
            future.set_result(None)
            await self._parked()
        self.clock.t = target

    async def _parked(self) -> None:
        """Until the progress speaker (if any) sleeps on the clock again or has finished."""
        speaker = self.turn._progress
        task = speaker._task if speaker is not None else None
        if task is None or task.done():
            return
        self.clock._parked.clear()
        if self.clock._sleepers:
            return  # asleep already (advance() takes a sleeper out before waking it)
        parked = asyncio.ensure_future(self.clock._parked.wait())
        await asyncio.wait({parked, task}, return_when=asyncio.FIRST_COMPLETED)
        parked.cancel()

    @property
    def said(self) -> list[str]:
        return [f.content for f in self.outbox.frames if f.content]


# --- timing ----------------------------------------------------------------------------------------


async def test_the_start_phrase_comes_after_delay_s_once():
    async with Harness() as h:
        await h.emit(start())
        await h.advance(0.99)
        assert h.said == []
        await h.advance(0.01)
        assert len(h.said) == 1 and h.said[0].strip() in START
        await h.advance(7.9)
        assert len(h.said) == 1, "no second phrase before interval_s"


async def test_a_tool_that_ends_before_delay_s_gets_no_phrase():
    async with Harness() as h:
        await h.emit(start())
        await h.advance(0.5)
        await h.emit(end(), TextDelta("Done. "))
        await h.advance(60)
        assert h.said == ["Done. "]
        assert h.turn._progress is not None and h.turn._progress._task is None


async def test_progress_lines_every_interval_up_to_max_lines():
    async with Harness({"max_lines": 2}) as h:
        await h.emit(start())
        await h.advance(1.0)
        await h.advance(8.0)
        await h.advance(8.0)
        await h.advance(80.0)
        assert len(h.said) == 3, h.said
        progress = ProgressSettings().phrases_for("en")[1]
        assert all(line.strip() in progress for line in h.said[1:])
        assert h.turn._progress is not None and h.turn._progress.lines == 2


async def test_max_lines_zero_says_only_the_start_phrase():
    async with Harness({"max_lines": 0}) as h:
        await h.emit(start())
        await h.advance(100)
        assert len(h.said) == 1 and h.said[0].strip() in START


async def test_no_start_phrase_when_the_runtime_spoke_since_the_tool_started():
    async with Harness() as h:
        await h.emit(start())
        await h.advance(0.2)
        await h.emit(TextDelta("Checking the weather. "))
        await h.advance(0.8)
        assert h.said == ["Checking the weather. "]
        await h.advance(8.0)  # the runtime is quiet since t=0.2: a progress line at t=9
        assert len(h.said) == 2 and h.said[1].strip() in ProgressSettings().phrases_for("en")[1]


async def test_no_start_phrase_over_text_sent_just_before_the_tool():
    async with Harness() as h:
        await h.emit(TextDelta("Sure, let me look that up. "))
        await h.advance(0.5)
        await h.emit(start())
        await h.advance(1.0)  # 1.5 s after the text: within quiet_s
        assert h.said == ["Sure, let me look that up. "]


async def test_text_older_than_quiet_s_does_not_block_the_start_phrase():
    async with Harness() as h:
        await h.emit(TextDelta("Sure. "))
        await h.advance(5.0)
        await h.emit(start())
        await h.advance(1.0)
        assert len(h.said) == 2 and h.said[1].strip() in START


async def test_a_progress_line_waits_for_the_next_interval_when_text_was_just_sent():
    async with Harness() as h:
        await h.emit(start())
        await h.advance(1.0)  # start phrase at t=1
        await h.advance(7.5)
        await h.emit(TextDelta("Found the first part. "))  # t=8.5
        await h.advance(0.5)  # t=9: within quiet_s of that text
        assert len(h.said) == 2
        await h.advance(8.0)  # t=17
        assert len(h.said) == 3


async def test_never_cuts_into_text_the_turn_still_holds():
    # Text without a phrase boundary after the first chunk is held (stall flush far away).
    async with Harness(stall_flush_ms=2000) as h:
        await h.emit(TextDelta("First. "), TextDelta("and then"))
        assert h.turn._chunker.pending
        await h.advance(5.0)
        await h.emit(start())
        await h.advance(1.0)
        assert h.said == ["First. "]


async def test_a_space_held_after_a_sentence_does_not_silence_the_tool():
    # A sentence after the first chunk leaves at its boundary ("look." of "look. "): the space after it
    # is held for the next words. That space is no text still to be spoken: the phrases are said.
    async with Harness() as h:
        await h.emit(TextDelta("Sure. "), TextDelta("Let me look. "))
        assert h.said == ["Sure. ", "Let me look."]
        await h.advance(5.0)
        await h.emit(start())
        await h.advance(1.0)
        assert len(h.said) == 3 and h.said[2].strip() in START, h.said


async def test_nothing_after_an_interruption():
    async with Harness() as h:
        await h.emit(start())
        await h.advance(0.5)
        speaker = h.turn._progress
        assert speaker is not None and speaker._task is not None
        task = speaker._task
        h.turn.supersede()
        assert h.result is not None
        h.result.cancel()
        await asyncio.gather(h.result, return_exceptions=True)
        assert task.done(), "the turn awaited its progress task"
        await h.advance(100)
        assert h.said == []
        assert h.turn._progress is None


async def test_nothing_after_the_stream_ended_with_a_tool_still_open():
    async with Harness() as h:
        await h.emit(start())
        await h.advance(0.5)
        task = h.turn._progress._task  # type: ignore[union-attr]
        assert await h.end_stream() is None
        assert task is not None and task.done()
        await h.advance(100)
        assert h.said == []


async def test_nothing_while_paused_on_a_confirmation():
    async with Harness() as h:
        await h.emit(start("exec"))
        request = ConfirmationRequest(id="r1", action="Run the command ls")
        h._queue.put_nowait(request)
        assert await h.result == request  # type: ignore[misc]
        await h.advance(100)
        assert h.said == []
        assert h.turn.tools_running == (start("exec"),)  # carried to the turn that answers


async def test_overlapping_tools_keep_it_going_until_the_last_ends():
    async with Harness() as h:
        await h.emit(start("search", "a"), start("fetch", "b"))
        await h.advance(1.0)
        await h.emit(end("search", "a"))
        await h.advance(8.0)
        assert len(h.said) == 2
        await h.emit(end("fetch", "b"))
        await h.advance(100)
        assert len(h.said) == 2


async def test_an_end_without_a_start_is_ignored_and_names_pair_without_ids():
    async with Harness() as h:
        await h.emit(start("search", None), end("other", None))
        await h.advance(1.0)
        assert len(h.said) == 1, "an unknown end does not stop it"
        await h.emit(end("search", None))
        await h.advance(100)
        assert len(h.said) == 1


async def test_a_second_tool_gets_progress_lines_but_not_a_second_start_phrase():
    async with Harness() as h:
        await h.emit(start("a", "1"))
        await h.advance(1.0)
        await h.emit(end("a", "1"), TextDelta("First done. "))
        await h.advance(5.0)
        await h.emit(start("b", "2"))
        await h.advance(7.9)
        assert len(h.said) == 2
        await h.advance(0.1)
        assert len(h.said) == 3 and h.said[2].strip() in ProgressSettings().phrases_for("en")[1]


async def test_a_progress_phrase_is_the_first_chunk_and_part_of_the_reply():
    async with Harness({"delay_s": 0.5}) as h:
        await h.emit(start())
        await h.advance(0.5)
        await h.emit(end(), TextDelta("It is sunny. "))
        assert len(h.metrics.first) == 1, "first chunk observed once, by the phrase"
        assert h.turn.first_text_at is not None
        assert h.turn.text.startswith(h.said[0]) and h.turn.text.endswith("It is sunny. ")
        assert h.turn.runtime_output == len("It is sunny.")


async def test_the_start_phrase_cancels_the_filler():
    # The filler's deadline is real time (a loop timer): far enough never to be reached here.
    async with Harness({"delay_s": 0.01}, filler_enabled=True, first_text_deadline_s=10) as h:
        await h.emit(start())
        await h.advance(0.01)
        assert len(h.said) == 1
        assert h.turn._filler is None
        await h.emit(end(), TextDelta("Done. "))
    assert "One moment." not in " ".join(h.said)


async def test_without_a_phrase_source_tool_events_are_ignored():
    outbox = StubOutbox()
    turn = Turn(1, outbox=outbox, settings=TurnSettings(filler_enabled=False), log=structlog.get_logger("t"))  # type: ignore[arg-type]

    async def events():  # type: ignore[no-untyped-def]
        yield start()
        yield TextDelta("Done. ")

    assert await turn.speak(events()) is None
    assert [f.content for f in outbox.frames if f.content] == ["Done. "]
    assert turn._progress is None and turn.last_sent_at is None


# --- the phrases --------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_phrases_vary_and_never_repeat_back_to_back(seed):
    phrases = ["a", "b", "c", "d"]
    rotation = _Rotation(phrases, random.Random(seed))
    picks = [rotation.next() for _ in range(200)]
    assert all(x != y for x, y in itertools.pairwise(picks))
    for i in range(0, 200, 4):
        assert sorted(picks[i : i + 4]) == phrases, "every phrase once per round"


def test_phrases_are_deterministic_with_a_seed_and_one_phrase_just_repeats():
    first, second = _Rotation(["a", "b", "c"], random.Random(3)), _Rotation(["a", "b", "c"], random.Random(3))
    one = [first.next() for _ in range(9)]
    again = [second.next() for _ in range(9)]
    assert one == again
    single = _Rotation(["only"], random.Random(1))
    assert [single.next() for _ in range(3)] == ["only"] * 3


# --- the hook ------------------------------------------------------------------------------------


class PhrasePlugin:
    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.calls: list[dict[str, Any]] = []

    @hookimpl
    def voice_channel_progress_phrase(self, kind, tool, count, elapsed_s, conversation):  # type: ignore[no-untyped-def]
        self.calls.append({"kind": kind, "tool": tool, "count": count, "elapsed_s": elapsed_s})
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer(kind, tool) if callable(self.answer) else self.answer


def hooks_with(*plugins: Any) -> PluginHooks:
    return PluginHooks(get_plugin_manager(load_entrypoints=False, extra_plugins=plugins))


async def test_hook_progress_phrase():
    """A plugin provides the words, and gets the kind, the tool, the line count and the time since it started."""
    plugin = PhrasePlugin(lambda kind, tool: f"Searching with {tool}." if kind == "start" else "Still searching.")
    async with Harness({"max_lines": 1}, hooks=hooks_with(plugin)) as h:
        await h.emit(start("web_search"))
        await h.advance(1.0)
        await h.advance(8.0)
    assert h.said == ["Searching with web_search. ", "Still searching. "]
    assert plugin.calls == [
        {"kind": "start", "tool": "web_search", "count": 0, "elapsed_s": 1.0},
        {"kind": "progress", "tool": "web_search", "count": 1, "elapsed_s": 9.0},
    ]


async def test_hook_answering_an_empty_string_keeps_the_caller_in_silence():
    plugin = PhrasePlugin("")
    async with Harness({"max_lines": 2}, hooks=hooks_with(plugin)) as h:
        await h.emit(start())
        await h.advance(100)
    assert h.said == []
    assert [c["kind"] for c in plugin.calls] == ["start", "progress", "progress"], "silence still counts as a line"


async def test_hook_answering_none_falls_back_to_the_built_in_phrase():
    async with Harness(hooks=hooks_with(PhrasePlugin(None))) as h:
        await h.emit(start())
        await h.advance(1.0)
    assert len(h.said) == 1 and h.said[0].strip() in START


@pytest.mark.parametrize("answer", [42, RuntimeError("plugin bug")])
async def test_hook_bad_answer_or_failure_says_the_built_in_phrase_and_logs_it(answer):
    with capture_logs() as logs:
        async with Harness(hooks=hooks_with(PhrasePlugin(answer))) as h:
            await h.emit(start())
            await h.advance(1.0)
    assert len(h.said) == 1 and h.said[0].strip() in START
    expected = "hook_bad_result" if isinstance(answer, int) else "hook_failed"
    assert any(e["event"] == expected and e["hook"] == "voice_channel_progress_phrase" for e in logs)


async def test_a_slow_hook_never_stacks_its_phrase_on_text_the_runtime_sent_meanwhile():
    release = asyncio.Event()
    asked = asyncio.Event()

    class SlowPlugin:
        @hookimpl
        async def voice_channel_progress_phrase(self, kind):  # type: ignore[no-untyped-def]
            asked.set()
            await release.wait()
            return "Late phrase."

    async with Harness(hooks=hooks_with(SlowPlugin())) as h:
        await h.emit(start())
        clock_advance = asyncio.ensure_future(h.advance(1.0))
        await asked.wait()
        await h.emit(TextDelta("Here is the answer. "), park=False)
        release.set()
        await clock_advance
        await h.advance(0)
    assert h.said == ["Here is the answer. "]


# --- settings -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ({"start_phrases": []}, "progress.start_phrases"),
        ({"progress_phrases": ["Still going.", "   "]}, "progress.progress_phrases"),
        ({"start_phrases": ["x" * 201]}, "longer than 200"),
        ({"interval_s": 0.5}, "progress.interval_s"),
        ({"delay_s": -1}, "progress.delay_s"),
        ({"max_lines": -1}, "progress.max_lines"),
        ({"quiet_s": "soon"}, "progress.quiet_s"),
    ],
)
def test_bad_progress_settings_name_the_key(tmp_path, config, fragment):
    path = tmp_path / "voice.yaml"
    path.write_text(yaml.safe_dump({"progress": config}))
    with pytest.raises(SettingsError) as error:
        load_settings(config_file=path)
    assert fragment in str(error.value)
    assert "Traceback" not in str(error.value)


def test_empty_phrase_list_error_says_how_to_stay_silent():
    with pytest.raises(SettingsError, match=r"progress\.enabled: false"):
        load_settings(config_data={"progress": {"start_phrases": []}})


def test_phrases_are_normalised_and_the_defaults_are_valid():
    settings = load_settings(config_data={"progress": {"start_phrases": ["  One   sec. "]}})
    assert settings.progress.start_phrases == ["One sec."]
    defaults = ProgressSettings()
    assert defaults.enabled and defaults.delay_s == 1.0 and defaults.interval_s == 8.0
    assert defaults.max_lines == 3 and defaults.quiet_s == 2.0


@pytest.mark.parametrize("language", LANGUAGE_CODES)
def test_every_language_has_valid_built_in_phrases_of_its_own(language):
    start, progress = ProgressSettings().phrases_for(language)
    assert (start, progress) == BUILTIN_PROGRESS_PHRASES[language]
    # The built-in lists pass the same checks as configured ones.
    checked = ProgressSettings(start_phrases=list(start), progress_phrases=list(progress))
    assert checked.start_phrases == list(start) and checked.progress_phrases == list(progress)
    if language != "en":
        english = set(BUILTIN_PROGRESS_PHRASES["en"][0]) | set(BUILTIN_PROGRESS_PHRASES["en"][1])
        assert not english & (set(start) | set(progress))


def test_configured_phrases_win_over_every_language_and_an_unknown_language_gets_english():
    settings = ProgressSettings(start_phrases=["Un momento."])
    assert settings.phrases_for("de")[0] == ["Un momento."]
    assert settings.phrases_for("de")[1] == BUILTIN_PROGRESS_PHRASES["de"][1]
    assert ProgressSettings().phrases_for("tlh") == BUILTIN_PROGRESS_PHRASES["en"]


# --- over the wire --------------------------------------------------------------------------------


async def scripted_channel(start_channel, behaviour, **settings):  # type: ignore[no-untyped-def]
    """A channel whose runtime is a :class:`ScriptedPlugin` playing ``behaviour``; returns (plugin, channel)."""
    plugin = ScriptedPlugin(behaviour)
    return plugin, await start_channel(plugins=[plugin], runtime="scripted", **settings)


def tool_then_answer(message, rec):  # type: ignore[no-untyped-def]
    async def run():  # type: ignore[no-untyped-def]
        yield ToolActivity(ToolPhase.START, "lookup", "call-1")
        await rec.release.wait()
        yield ToolActivity(ToolPhase.END, "lookup", "call-1")
        yield TextDelta("The answer is 42.")

    return run()


async def test_progress_phrase_reaches_the_caller_before_the_answer(start_channel):
    plugin, channel = await scripted_channel(
        start_channel,
        tool_then_answer,
        progress={"delay_s": 0.05, "start_phrases": ["Let me check that."]},
    )
    async with conversation(channel) as client:
        await client.say("what is the answer")
        first = await client.receive(timeout=10)
        assert first["content"] == "Let me check that. " and first["event_id"] == 1 and not first["is_final"]
        plugin.recorder.release.set()
        reply = await client.reply()
        client.heard(first["content"] + reply.text)
        await client.say("thanks")
        await client.reply()
    assert reply.text == "The answer is 42."
    assert reply.final
    # The record knows the phrase was the channel's: a model's history gets the runtime's words only.
    answer = next(e for e in plugin.recorder.contexts[-1].record.entries if e.role == "assistant")
    assert answer.channel_phrases == ("Let me check that. ",)
    assert answer.runtime_text == "The answer is 42."


async def test_progress_disabled_says_nothing_while_the_tool_runs(start_channel):
    plugin, channel = await scripted_channel(
        start_channel,
        tool_then_answer,
        progress={"enabled": False, "delay_s": 0.0},
        turn={"filler_enabled": False},
    )
    async with conversation(channel) as client:
        await client.say("what is the answer")
        await plugin.recorder.started.wait()
        plugin.recorder.release.set()
        reply = await client.reply()
    assert reply.chunks == ["The answer is 42."]


async def test_an_interruption_during_a_tool_silences_it_and_the_next_reply_is_clean(start_channel):
    async def behaviour(message, rec):  # type: ignore[no-untyped-def]
        if message.text == "look it up":
            yield ToolActivity(ToolPhase.START, "lookup", "call-1")
            await asyncio.Event().wait()  # the tool never ends; the turn is interrupted
        yield TextDelta("Okay.")

    plugin, channel = await scripted_channel(
        start_channel,
        behaviour,
        progress={"delay_s": 0.05, "interval_s": 1.0, "quiet_s": 0.0, "start_phrases": ["Let me check that."]},
    )
    async with conversation(channel) as client:
        await client.say("look it up")
        first = await client.receive(timeout=10)
        assert first["content"] == "Let me check that. "
        await client.say("what about tomorrow")
        reply = await client.reply(2)
        await plugin.recorder.cancel_seen.wait()
    assert reply.text == "Okay."
    assert all(f.get("event_id") == 1 and not f.get("is_final") for f in reply.foreign)


def tool_behind_a_confirmation(message, rec):  # type: ignore[no-untyped-def]
    """Starts a tool, asks before it really runs (as Hermes's terminal and OpenClaw's exec do), then runs it."""

    async def run():  # type: ignore[no-untyped-def]
        yield ToolActivity(ToolPhase.START, "terminal", "call-1")
        yield ConfirmationRequest(id="r1", action="Run the command make deploy")
        if rec.resolved and rec.resolved[-1][1].approved:
            await rec.release.wait()  # the approved tool runs
            yield ToolActivity(ToolPhase.END, "terminal", "call-1")
            yield TextDelta("Deployed.")
        else:
            yield ToolActivity(ToolPhase.END, "terminal", "call-1")
            yield TextDelta("Okay, I did not run it.")

    return run()


async def test_a_tool_approved_by_voice_gets_its_start_phrase_in_the_turn_that_approved_it(start_channel):
    plugin, channel = await scripted_channel(
        start_channel,
        tool_behind_a_confirmation,
        progress={"delay_s": 0.05, "start_phrases": ["Let me check that."]},
    )
    async with conversation(channel) as client:
        await client.say("deploy it")
        prompt = await client.reply()
        assert "Let me check that." not in prompt.text  # the tool waits for the answer: nothing to cover yet
        await client.say("yes")
        first = await client.receive(timeout=10)
        assert first == {"type": "agent_response", "content": "Let me check that. ", "event_id": 2, "is_final": False}
        plugin.recorder.release.set()
        reply = await client.reply(2)
    assert plugin.recorder.resolved[0][1].approved
    assert reply.text == "Deployed."
    assert reply.final


async def test_a_tool_denied_by_voice_gets_no_start_phrase(start_channel):
    plugin, channel = await scripted_channel(
        start_channel,
        tool_behind_a_confirmation,
        progress={"delay_s": 0.0, "start_phrases": ["Let me check that."]},
        turn={"filler_enabled": False},
    )
    async with conversation(channel) as client:
        await client.say("deploy it")
        await client.reply()
        await client.say("no")
        reply = await client.reply(2)
    assert not plugin.recorder.resolved[0][1].approved
    assert reply.chunks == ["Okay, I did not run it."]


@pytest.mark.parametrize(
    ("settings", "headers", "language"),
    [
        ({"language": "es"}, {}, "es"),
        ({}, {"x-voice-channel-language": "fr-CA"}, "fr"),
    ],
    ids=["setting", "header"],
)
async def test_the_built_in_phrase_is_in_the_conversation_language(start_channel, settings, headers, language):
    plugin = ScriptedPlugin(tool_then_answer)
    channel = await start_channel(
        plugins=[plugin], runtime="scripted", progress={"delay_s": 0.05}, confirmations=settings
    )
    async with conversation(channel, headers=headers) as client:
        await client.say("what is the answer")
        first = await client.receive(timeout=10)
        plugin.recorder.release.set()
        await client.reply()
    assert first["content"].strip() in BUILTIN_PROGRESS_PHRASES[language][0]
    assert plugin.recorder.contexts[0].language == language


@pytest.mark.parametrize("held", ["ticket #4521", "the file config_prod.yaml", "it (one moment)."])
async def test_a_progress_line_never_cuts_into_text_the_shaper_holds(held):
    # The shaper holds a trailing word that may still become markup ("#4521", "config_prod.yaml",
    # "moment)."): the chunker holds nothing, so a progress line is said, right in the middle of the
    # runtime's sentence, and the held word is heard only when the tool is done.
    async with Harness() as h:
        await h.emit(TextDelta(f"Let me check {held}"), start())
        await asyncio.sleep(0.1)  # the turn's stall flush (a loop timer, 40 ms) may run
        await h.advance(1.0 + 8.0)  # the start phrase is skipped (text just before), a progress line is due
        during_tool = list(h.said)
        await h.emit(end(), TextDelta(" Done."))
        await h.end_stream()
        await h.turn.finish()
    runtime_words = "".join(s for s in h.said if s not in h.turn.channel_phrases)
    assert runtime_words == f"Let me check {held} Done."
    assert "".join(h.said).startswith(f"Let me check {held}"), h.said
    assert "".join(during_tool).startswith(f"Let me check {held}"), "held for the whole tool run"


async def test_a_progress_line_is_not_glued_to_the_runtimes_last_word():
    # ElevenLabs concatenates a turn's chunks: "...the weather nowThis is taking..." is one word.
    async with Harness() as h:
        await h.emit(TextDelta("Checking the weather now"), start())
        await asyncio.sleep(0.1)  # the stall flush (40 ms, a loop timer) sends what the chunker holds
        await h.advance(1.0 + 8.0)
        await h.emit(end(), TextDelta("It is sunny."))
        await h.end_stream()
        await h.turn.finish()
    assert len(h.turn.channel_phrases) == 1
    spoken = "".join(h.said)
    phrase = h.turn.channel_phrases[0].strip()
    assert f"now {phrase}" in spoken, spoken
