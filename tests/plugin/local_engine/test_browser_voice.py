"""Spoken conversations in a real headless Chromium: the page → the real ``@elevenlabs/client`` → the local engine.

The channel runs in local mode (its token endpoint gets signed URLs from the local engine through the official
SDK), the page is the one users get, and Chromium's fake microphone plays a WAV made in the test with piper:
utterances separated by silences long enough for each reply to play. Nothing here reaches the internet
(``--host-resolver-rules``); a console error or warning, an uncaught error or a foreign request fails a test.

Needs Debian ``chromium`` (``CHROMIUM_BIN``) and the built page (``make web``): under ``CI`` their absence fails.
"""

from __future__ import annotations

import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from chromium_support import GRANT_MICROPHONE, Browser, chromium_launcher
from voice_channel.local_engine.local_mode import channel_overrides

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

RATE = 16000


def write_wav(path: Path, parts: list[bytes | float]) -> Path:
    """Speech (PCM bytes) and silences (seconds) one after the other, as a 16 kHz mono WAV."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        for part in parts:
            out.writeframes(part if isinstance(part, bytes) else bytes(int(part * RATE) * 2))
    return path


class Page(Browser):
    """A page with a spoken conversation; here a foreign request is a problem too."""

    def problems(self) -> list[str]:
        return super().problems() + [f"request: {url}" for url in self.foreign_requests()]

    async def transcript(self) -> list[tuple[str, str]]:
        items = await self.page.eval_on_selector_all(
            "#transcript li", "items => items.map(li => [li.querySelector('.who').textContent, li.textContent])"
        )
        return [(who, text[len(who) :].strip()) for who, text in items]

    async def wait_lines(self, count: int, timeout_ms: int = 60_000) -> list[tuple[str, str]]:
        from playwright.async_api import expect

        await expect(self.page.locator("#transcript li")).to_have_count(count, timeout=timeout_ms)
        return await self.transcript()


@pytest.fixture
async def chromium() -> AsyncIterator[Any]:
    """``await chromium(wav)`` opens a page whose microphone plays ``wav`` once."""
    async with chromium_launcher(Page, timeout_ms=30_000, profile_prefix="voice-channel-local-") as launch:

        async def start(wav: Path) -> Page:
            return await launch([GRANT_MICROPHONE, f"--use-file-for-fake-audio-capture={wav}%noloop"])

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


async def turns_done(engine: Any, count: int, timeout: float = 30.0) -> list[Any]:
    """The engine's metrics once ``count`` turns have ended (a turn ends after its audio was sent)."""
    import asyncio

    state = engine.state
    async with asyncio.timeout(timeout):
        while len(state.metrics) < count:
            state.metrics_changed.clear()
            await state.metrics_changed.wait()
    return list(state.metrics)


async def open_and_start(page: Page, channel: Any) -> None:
    await page.page.goto(str(channel.server.make_url("/")))
    await page.page.click("#start")
    await page.page.wait_for_selector("body[data-state=connected]", state="attached", timeout=30_000)


async def test_add_milk_then_read_the_list_by_voice_in_chromium(local_stack, chromium, speak, tmp_path):
    channel, engine = await local_stack()
    wav = write_wav(
        tmp_path / "two_turns.wav",
        [2.0, speak("Please add milk to my list."), 4.0, speak("What is on my list?"), 5.0],
    )
    page = await chromium(wav)
    await open_and_start(page, channel)
    lines = await page.wait_lines(4)
    assert lines[0][0] == "You" and "milk" in lines[0][1].lower()
    assert lines[1] == ("Assistant", "Added milk.")
    assert lines[2][0] == "You" and "list" in lines[2][1].lower()
    assert lines[3] == ("Assistant", "Your list has milk.")
    # The replies came back as audio, and the page shows each turn's latency as the engine measured it.
    metrics = await turns_done(engine, 2)
    assert all(m.first_audio_s is not None for m in metrics)
    from playwright.async_api import expect

    await expect(page.page.locator("#latency")).to_contain_text(f"Turn {metrics[1].event_id}:")
    latency = await page.page.text_content("#latency")
    assert latency is not None and "first audio" in latency
    await page.page.click("#stop")
    await page.page.wait_for_selector("body[data-state=idle]", state="attached")
    assert page.problems() == []


async def test_barge_in_stops_a_long_reply_in_chromium(local_stack, chromium, speak, tmp_path):
    channel, engine = await local_stack()
    # The demo answers something it does not understand with a help reply of about five seconds; the second
    # utterance starts 1.2 s after the first one ends, while that reply plays.
    wav = write_wav(
        tmp_path / "barge_in.wav",
        [2.0, speak("Tell me something nice about the weather."), 1.2, speak("Please add milk to my list."), 5.0],
    )
    page = await chromium(wav)
    await open_and_start(page, channel)
    lines = await page.wait_lines(4)
    assert lines[1][0] == "Assistant" and lines[1][1].startswith("I can add, read, remove or clear")
    assert lines[2][0] == "You" and "milk" in lines[2][1].lower()
    assert lines[3] == ("Assistant", "Added milk.")
    metrics = await turns_done(engine, 2)
    interrupted = [m for m in metrics if m.interrupted]
    assert [m.transcript for m in interrupted] == [lines[0][1]]
    answered = [m for m in metrics if not m.interrupted and m.first_audio_s is not None]
    assert answered and answered[-1].event_id > interrupted[0].event_id
    assert page.problems() == []


async def test_clear_the_list_with_the_spoken_code_word_in_chromium(
    local_stack, chromium, speak, tmp_path, monkeypatch
):
    import voice_channel.channel.confirmations as confirmations

    # The WAV is made before the conversation, so the code word must be known in advance.
    monkeypatch.setattr(confirmations, "CODE_WORDS", ("falcon",))
    channel, engine = await local_stack()
    wav = write_wav(
        tmp_path / "confirm.wav",
        [
            2.0,
            speak("Please add milk to my list."),
            3.5,
            speak("Please clear my list."),
            11.0,  # the confirmation prompt is long
            speak("Falcon."),
            3.5,
            speak("What is on my list?"),
            5.0,
        ],
    )
    page = await chromium(wav)
    await open_and_start(page, channel)
    lines = await page.wait_lines(8, timeout_ms=90_000)
    assert lines[1] == ("Assistant", "Added milk.")
    assert 'say the code word "falcon"' in lines[3][1]
    assert lines[4][0] == "You" and "falcon" in lines[4][1].lower()
    assert lines[5] == ("Assistant", "Cleared your list.")
    assert lines[7] == ("Assistant", "Your list is empty.")
    assert not any(m.interrupted for m in await turns_done(engine, 4))
    assert page.problems() == []
