"""Spoken conversations in a real headless Chromium: the page → the real ``@elevenlabs/client`` → the local engine.

The channel runs in local mode (its token endpoint gets signed URLs from the local engine through the official
SDK) and the page is the one users get. The page's microphone is a test microphone
(:data:`chromium_support.TEST_MICROPHONE`) that plays piper speech made in the test, one utterance at a time: each
is said once the engine has done what the conversation waits for (the reply played out, or, to barge in, the
reply's first audio sent), never after a fixed time, so a loaded machine makes the test slower, not different.
Between utterances the microphone is silent for as long as that takes, which covers the VAD's end-of-turn
hang-over at any load. Nothing here reaches the internet (``--host-resolver-rules``); a console error or warning,
an uncaught error or a foreign request fails a test.

Needs Debian ``chromium`` (``CHROMIUM_BIN``) and the built page (``make web``): under ``make test`` or ``CI`` their
absence fails. ``pytest --cpu-load 2`` runs them beside ``stress-ng --cpu 2``.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any

import pytest

from chromium_support import TEST_MICROPHONE, Browser, chromium_launcher
from voice_channel.local_engine.local_mode import channel_overrides

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

RATE = 16000
#: How long one step of a conversation may take on a loaded machine before the test gives up.
STEP_TIMEOUT_S = 90.0


class Page(Browser):
    """A page with a spoken conversation; here a foreign request is a problem too."""

    def problems(self) -> list[str]:
        return super().problems() + [f"request: {url}" for url in self.foreign_requests()]

    async def say(self, pcm: bytes) -> None:
        """Play 16 kHz speech into the page's microphone; return once it has been played."""
        await self.page.evaluate(
            "([pcm, rate]) => window.__testMicrophone.say(pcm, rate)", [base64.b64encode(pcm).decode(), RATE]
        )

    async def transcript(self) -> list[tuple[str, str]]:
        items = await self.page.eval_on_selector_all(
            "#transcript li", "items => items.map(li => [li.querySelector('.who').textContent, li.textContent])"
        )
        return [(who, text[len(who) :].strip()) for who, text in items]

    async def wait_lines(self, count: int, timeout_ms: int = 60_000) -> list[tuple[str, str]]:
        from playwright.async_api import expect

        await expect(self.page.locator("#transcript li")).to_have_count(count, timeout=timeout_ms)
        return await self.transcript()


class Events:
    """The local engine's turn-taking events, read in order: what a test synchronises on."""

    def __init__(self, engine: Any) -> None:
        self.state = engine.state
        self.seen = 0

    async def next(self, kind: str, event_id: int | None = None) -> Any:
        """The next event of ``kind`` (for turn ``event_id``) after those already read."""
        try:
            async with asyncio.timeout(STEP_TIMEOUT_S):
                index, event = await self.state.wait_event(kind, event_id=event_id, after=self.seen)
        except TimeoutError:
            happened = [(e.kind, e.event_id) for e in self.state.events[self.seen :]]
            raise AssertionError(f"no {kind} (event_id {event_id}) from the engine; it did {happened}") from None
        self.seen = index + 1
        return event

    async def exchange(self, page: Page, pcm: bytes) -> int:
        """Say ``pcm``, then wait until its turn's reply has played out; return the turn's event_id."""
        await page.say(pcm)
        ended = await self.next("speech_ended")
        await self.next("played_out", ended.event_id)
        return int(ended.event_id)


@pytest.fixture
async def chromium() -> AsyncIterator[Any]:
    """``await chromium()`` opens a page whose microphone the test speaks into (``page.say``)."""
    async with chromium_launcher(Page, timeout_ms=30_000, profile_prefix="voice-channel-local-") as launch:

        async def start() -> Page:
            page = await launch(["--autoplay-policy=no-user-gesture-required"])
            await page.context.add_init_script(TEST_MICROPHONE)
            return page

        yield start


@pytest.fixture
def local_stack(start_channel: Any, start_engine: Any, api_key: str):  # type: ignore[no-untyped-def]
    """The channel in local mode serving the page, and a local engine in front of it."""

    async def start(**channel: Any):  # type: ignore[no-untyped-def]
        placeholder = "ws://127.0.0.1:9/not-yet"
        engine = await start_engine(placeholder)
        overrides = channel_overrides(engine.base_url)
        overrides["elevenlabs"]["api_key"] = api_key
        overrides["token"]["allow_anonymous"] = True
        ch = await start_channel(runtime="demo", ui={"enabled": True}, **overrides, **channel)
        engine.state.config = engine.state.config.model_copy(update={"channel_url": ch.url})
        return ch, engine

    return start


async def open_and_start(page: Page, channel: Any) -> None:
    await page.page.goto(str(channel.server.make_url("/")))
    await page.page.click("#start")
    await page.page.wait_for_selector("body[data-state=connected]", state="attached", timeout=30_000)


async def test_add_milk_then_read_the_list_by_voice_in_chromium(local_stack, chromium, speak):
    channel, engine = await local_stack()
    events = Events(engine)
    page = await chromium()
    await open_and_start(page, channel)
    first = await events.exchange(page, speak("Please add milk to my list."))
    second = await events.exchange(page, speak("What is on my list?"))
    lines = await page.wait_lines(4)
    assert lines[0][0] == "You" and "milk" in lines[0][1].lower()
    assert lines[1] == ("Assistant", "Added milk.")
    assert lines[2][0] == "You" and "list" in lines[2][1].lower()
    assert lines[3] == ("Assistant", "Your list has milk.")
    # The replies came back as audio, and the page shows each turn's latency as the engine measured it.
    metrics = {m.event_id: m for m in engine.state.metrics}
    assert metrics[first].first_audio_s is not None and metrics[second].first_audio_s is not None
    from playwright.async_api import expect

    await expect(page.page.locator("#latency")).to_contain_text(f"Turn {second}:")
    latency = await page.page.text_content("#latency")
    assert latency is not None and "first audio" in latency
    await page.page.click("#stop")
    await page.page.wait_for_selector("body[data-state=idle]", state="attached")
    assert not any(e.kind in ("turn_continued", "interrupted") for e in engine.state.events)
    assert page.problems() == []


async def test_barge_in_stops_a_long_reply_in_chromium(local_stack, chromium, speak):
    channel, engine = await local_stack()
    events = Events(engine)
    page = await chromium()
    await open_and_start(page, channel)
    # The demo answers something it does not understand with a help reply of about five seconds; the second
    # utterance is said as soon as that reply's first audio went out, so it is spoken over the reply.
    await page.say(speak("Tell me something nice about the weather."))
    long_turn = (await events.next("speech_ended")).event_id
    await events.next("first_audio", long_turn)
    await page.say(speak("Please add milk to my list."))
    await events.next("interrupted", long_turn)
    answered = (await events.next("speech_ended")).event_id
    await events.next("played_out", answered)
    lines = await page.wait_lines(4)
    assert lines[1][0] == "Assistant" and lines[1][1].startswith("I can add, read, remove or clear")
    assert lines[2][0] == "You" and "milk" in lines[2][1].lower()
    assert lines[3] == ("Assistant", "Added milk.")
    metrics = {m.event_id: m for m in engine.state.metrics}
    assert metrics[long_turn].interrupted and metrics[long_turn].transcript == lines[0][1]
    assert not metrics[answered].interrupted and metrics[answered].first_audio_s is not None
    assert answered > long_turn
    assert not any(e.kind == "turn_continued" for e in engine.state.events)
    assert page.problems() == []


async def test_clear_the_list_with_the_spoken_code_word_in_chromium(local_stack, chromium, speak, monkeypatch):
    import voice_channel.channel.confirmations as confirmations

    # The utterances are made before the conversation, so the code word must be known in advance.
    monkeypatch.setattr(confirmations, "CODE_WORDS", ("falcon",))
    channel, engine = await local_stack()
    events = Events(engine)
    page = await chromium()
    await open_and_start(page, channel)
    for utterance in ("Please add milk to my list.", "Please clear my list.", "Falcon.", "What is on my list?"):
        await events.exchange(page, speak(utterance))
    lines = await page.wait_lines(8)
    assert lines[1] == ("Assistant", "Added milk.")
    assert 'say the code word "falcon"' in lines[3][1]
    assert lines[4][0] == "You" and "falcon" in lines[4][1].lower()
    assert lines[5] == ("Assistant", "Cleared your list.")
    assert lines[7] == ("Assistant", "Your list is empty.")
    assert not any(m.interrupted for m in engine.state.metrics)
    assert not any(e.kind in ("turn_continued", "interrupted") for e in engine.state.events)
    assert page.problems() == []
