"""Spoken conversations, end to end: browser protocol → local engine → our channel (demo runtime) → back.

The caller's speech is generated in the test (piper), streamed in real time by a Python client
that speaks the ``@elevenlabs/client`` WebSocket protocol, turned into text by the engine's
Whisper, answered by the channel, spoken by piper and checked by transcribing the agent audio
back. A recording proxy on the Speech Engine link (the probe) checks that both sides agree.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any

import pytest

from speech_engine_probe import SpeechEngineProbe, Wire
from voice_channel.channel.confirmations import CODE_WORDS
from voice_channel.local_engine.audio import resample
from voice_channel.local_engine.probe import ConvaiProbe

pytestmark = pytest.mark.timeout(180)


def words(text: str) -> str:
    return " ".join(re.sub(r"[^a-z' ]", " ", text.lower()).split())


@dataclass
class Exchange:
    event_id: int
    transcript: str
    reply: str
    index: int


async def converse(browser: ConvaiProbe, engine: Any, pcm: bytes, *, listen: bool = True) -> Exchange:
    """Say ``pcm``, wait for the transcript and the reply, and (by default) listen to the reply."""
    start = len(browser.received)
    browser.say(pcm)
    heard = await browser.wait_type("user_transcript", after=start)
    event_id = heard.event()["event_id"]
    reply = await browser.wait_type("agent_response", after=start, event_id=event_id)
    if listen:
        await listen_to(browser, engine, event_id, start)
    return Exchange(event_id, heard.event()["user_transcript"], reply.event()["agent_response"], start)


async def listen_to(browser: ConvaiProbe, engine: Any, event_id: int, start: int) -> None:
    """Wait for the reply's audio to begin, then for it to play out: all of it, as the engine counts it (on a
    loaded machine a later sentence can come after the earlier ones played), and as the listener hears it."""
    await browser.wait_type("audio", after=start, event_id=event_id)
    async with asyncio.timeout(90):
        await engine.state.wait_event("played_out", event_id=event_id)
    await browser.listen(after=start)


def transcribe_audio(models: Any, browser: ConvaiProbe, event_id: int) -> str:
    rate = int(browser.metadata["agent_output_audio_format"].split("_")[1])  # type: ignore[index]
    pcm = resample(browser.audio(event_id), rate, 16000)
    assert pcm, f"no audio for event_id {event_id}"
    return words(models.transcriber.transcribe(pcm).text)


async def start_stack(start_channel: Any, start_engine: Any, *, plugins: Any = (), channel: Any = None, **engine: Any):
    channel_overrides = channel or {}
    channel_overrides.setdefault("runtime", "demo")
    channel = await start_channel(plugins=plugins, **channel_overrides)
    probe = SpeechEngineProbe(channel.url)
    url = await probe.start()
    local = await start_engine(url, **engine)
    return channel, probe, local


def check_conformance(browser: ConvaiProbe, wire: Wire) -> None:
    """Both sides of the engine agree on event ids, transcripts and finals (the browser's view vs. the wire's)."""
    transcripts_up = wire.up("user_transcript")
    ids_up = [frame["event_id"] for frame in transcripts_up]
    assert ids_up == sorted(ids_up), f"event ids sent to the channel must not decrease: {ids_up}"
    shown = {item.event()["event_id"]: item.event()["user_transcript"] for item in browser.of_type("user_transcript")}
    assert set(ids_up) == set(shown), "the channel gets exactly the turns the browser was shown"
    for frame in transcripts_up:
        assert frame["user_transcript"][-1] == {"role": "user", "content": shown[frame["event_id"]]}
    chunks: dict[int, str] = {}
    finals: set[int] = set()
    for frame in wire.down("agent_response"):
        chunks[frame["event_id"]] = chunks.get(frame["event_id"], "") + frame["content"]
        if frame["is_final"]:
            finals.add(frame["event_id"])
    interrupted = {item.event()["event_id"] for item in browser.of_type("agent_response_correction")}
    for item in browser.of_type("agent_response"):
        event_id = item.event()["event_id"]
        if event_id not in interrupted:
            # A reply is shown whole, and only once the channel closed it with its final.
            assert event_id in finals, f"reply {event_id} shown without the channel's final"
            assert item.event()["agent_response"] == chunks[event_id].strip()
    for event_id in set(shown) - interrupted:
        if event_id in finals and chunks[event_id].strip():
            assert any(i.event()["event_id"] == event_id for i in browser.of_type("agent_response"))
    # Audio only for turns the browser knows, none after the turn's interruption, and interruption ids between
    # the interrupted turn's id and the next turn's.
    cut: dict[int, int] = {}
    for index, item in enumerate(browser.received):
        if item.type == "interruption":
            interruption_id = item.event()["event_id"]
            assert interruption_id not in shown
            before = max(i for i in shown if i < interruption_id)
            after = [i for i in shown if i > interruption_id]
            assert before in interrupted
            cut[before] = index
            if after:
                assert min(after) > interruption_id
    for index, item in enumerate(browser.received):
        if item.type == "audio":
            event_id = item.event()["event_id"]
            assert event_id in shown
            assert index < cut.get(event_id, len(browser.received)), f"audio of {event_id} after its interruption"


async def test_conformance_and_add_milk_then_read_list_by_voice(start_channel, start_engine, speak, speech_models):
    _channel, probe, local = await start_stack(start_channel, start_engine, ping_interval_s=1.0)
    try:
        async with ConvaiProbe(await local.signed_url()) as browser:
            assert browser.metadata["user_input_audio_format"] == "pcm_16000"  # type: ignore[index]
            first = await converse(browser, local, speak("Please add milk to my list."))
            assert "milk" in words(first.transcript)
            assert first.reply == "Added milk."
            assert "milk" in transcribe_audio(speech_models, browser, first.event_id)

            second = await converse(browser, local, speak("What is on my list?"))
            assert words(second.transcript) in {"what is on my list", "what's on my list"}
            assert second.event_id > first.event_id
            assert second.reply == "Your list has milk."
            assert "milk" in transcribe_audio(speech_models, browser, second.event_id)

            # The engine announced each step of the turn, in order (what tests synchronise on).
            steps = [e.kind for e in local.state.events if e.event_id == first.event_id and e.kind != "speech_started"]
            assert steps == ["speech_ended", "transcript_sent", "first_audio", "turn_done", "played_out"]
            metrics = browser.of_type("local_engine_metrics")
            assert [m.event()["event_id"] for m in metrics] == [first.event_id, second.event_id]
            assert all(m.event()["first_audio_s"] > 0 for m in metrics)
            assert browser.of_type("ping"), "the engine pings the browser"
        await probe.wire.wait(lambda w: w.up("close"))
        check_conformance(browser, probe.wire)
        # The history the channel got holds what was said and heard, in order.
        assert probe.wire.up("user_transcript")[-1]["user_transcript"] == [
            {"role": "user", "content": first.transcript},
            {"role": "agent", "content": "Added milk."},
            {"role": "user", "content": second.transcript},
        ]
        assert probe.wire.up("init")[0]["conversation_id"].startswith("conv_local_")
    finally:
        await probe.close()


async def test_barge_in_stops_the_long_reply_and_the_new_turn_is_answered(
    start_channel, start_engine, speak, speech_models
):
    _channel, probe, local = await start_stack(start_channel, start_engine)
    try:
        async with ConvaiProbe(await local.signed_url()) as browser:
            # Anything the demo does not understand gets a long, two-sentence help reply.
            start = len(browser.received)
            browser.say(speak("Tell me something nice about the weather."))
            help_turn = await browser.wait_type("user_transcript", after=start)
            long_id = help_turn.event()["event_id"]
            await browser.wait_type("audio", after=start, event_id=long_id)
            # Speak over it as soon as it is heard.
            barge = await converse(browser, local, speak("Please add milk to my list."), listen=False)
            interruption = browser.of_type("interruption")
            assert len(interruption) == 1
            interruption_id = interruption[0].event()["event_id"]
            assert long_id < interruption_id < barge.event_id
            assert barge.reply == "Added milk."
            await listen_to(browser, local, barge.event_id, barge.index)

            cut = next(i for i, item in enumerate(browser.received) if item.type == "interruption")
            late = [i for i in browser.received[cut:] if i.type == "audio" and i.event()["event_id"] == long_id]
            assert not late, "no audio of the superseded reply after the interruption"
            correction = browser.of_type("agent_response_correction")[0].event()
            assert correction["event_id"] == long_id
            assert correction["original_agent_response"].startswith("I can add, read, remove or clear")
            heard = correction["corrected_agent_response"]
            assert len(heard) < len(correction["original_agent_response"])
            # The whole long reply was about 5 s; what played before the barge-in was far less.
            assert len(browser.audio(long_id)) / 2 / 16000 < 3.0
            assert "milk" in transcribe_audio(speech_models, browser, barge.event_id)
        await probe.wire.wait(lambda w: w.up("close"))
        check_conformance(browser, probe.wire)
        history = probe.wire.up("user_transcript")[-1]["user_transcript"]
        assert history[-1] == {"role": "user", "content": barge.transcript}
        if heard:  # the channel learns what the caller actually heard of the interrupted reply
            assert history[-2] == {"role": "agent", "content": heard}
        else:
            assert history[-2]["role"] == "user"
    finally:
        await probe.close()


async def test_spoken_confirmation_with_code_word(start_channel, start_engine, speak, speech_models):
    _channel, probe, local = await start_stack(start_channel, start_engine)
    try:
        async with ConvaiProbe(await local.signed_url()) as browser:
            added = await converse(browser, local, speak("Please add milk to my list."))
            assert added.reply == "Added milk."
            ask = await converse(browser, local, speak("Please clear my list."))
            assert words(ask.transcript) == "please clear my list"
            match = re.search(r'say the code word "([a-z]+)"', ask.reply)
            assert match, ask.reply
            code_word = match.group(1)
            assert code_word in CODE_WORDS
            done = await converse(browser, local, speak(f"{code_word.capitalize()}."))
            assert code_word in words(done.transcript)
            assert done.reply == "Cleared your list."
            empty = await converse(browser, local, speak("What is on my list?"))
            assert empty.reply == "Your list is empty."
            assert "empty" in transcribe_audio(speech_models, browser, empty.event_id)
        await probe.wire.wait(lambda w: w.up("close"))
        check_conformance(browser, probe.wire)
    finally:
        await probe.close()


async def test_spoken_no_keeps_the_list(start_channel, start_engine, speak):
    _channel, probe, local = await start_stack(start_channel, start_engine)
    try:
        async with ConvaiProbe(await local.signed_url()) as browser:
            await converse(browser, local, speak("Please add bread to my list."))
            ask = await converse(browser, local, speak("Please remove bread."))
            assert "Should I go ahead?" in ask.reply
            answer = await converse(browser, local, speak("No."))
            assert answer.reply == "Okay, I kept bread."
    finally:
        await probe.close()


# --- interruption ignore terms ---------------------------------------------------------------------
# Whisper tiny.en hears piper's "Uh huh." as "Uh-huh." (piper's "Uh-huh." comes out as "Oh."), so the caller says
# "Uh huh." and the engine's ignore term is spelled "uh-huh": the match ignores case, punctuation and hyphens.

IGNORE = {"interruption_ignore_terms": ["uh-huh", "gotcha"]}


async def long_reply(browser: ConvaiProbe, speak) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """Ask something the demo answers with its long help reply; returns its event_id once its audio is heard."""
    start = len(browser.received)
    browser.say(speak("Tell me something nice about the weather."))
    heard = await browser.wait_type("user_transcript", after=start)
    event_id = heard.event()["event_id"]
    await browser.wait_type("audio", after=start, event_id=event_id)
    return event_id, start


async def test_a_spoken_ignore_term_does_not_interrupt_the_reply(start_channel, start_engine, speak):
    _channel, probe, local = await start_stack(start_channel, start_engine, **IGNORE)
    try:
        async with ConvaiProbe(await local.signed_url()) as browser:
            long_id, start = await long_reply(browser, speak)
            after = len(local.state.events)
            browser.say(speak("Uh huh."))
            async with asyncio.timeout(60):
                held, _ = await local.state.wait_event("backchannel_held", event_id=long_id, after=after)
                await local.state.wait_event("backchannel_ignored", event_id=long_id, after=held)
            await listen_to(browser, local, long_id, start)
            assert browser.of_type("interruption") == []
            assert [item.event()["event_id"] for item in browser.of_type("user_transcript")] == [long_id]
            assert not any(e.kind == "interrupted" for e in local.state.events)
            # The whole help reply played (about 5 s; a barge-in cuts it under 3 s, see test_voice.py).
            assert len(browser.audio(long_id)) / 2 / 16000 > 3.0
        await probe.wire.wait(lambda w: w.up("close"))
        assert len(probe.wire.up("user_transcript")) == 1, "the backchannel never reached the channel"
    finally:
        await probe.close()


async def test_other_short_words_over_the_reply_still_interrupt(start_channel, start_engine, speak):
    _channel, probe, local = await start_stack(start_channel, start_engine, **IGNORE)
    try:
        async with ConvaiProbe(await local.signed_url()) as browser:
            long_id, _start = await long_reply(browser, speak)
            after = len(local.state.events)
            barge = await converse(browser, local, speak("Add milk."), listen=False)
            held, _ = await local.state.wait_event("backchannel_held", event_id=long_id, after=after)
            await local.state.wait_event("interrupted", event_id=long_id, after=held)
            assert not any(e.kind == "backchannel_ignored" for e in local.state.events)
            assert len(browser.of_type("interruption")) == 1
            assert barge.event_id > long_id and barge.reply == "Added milk."
            await listen_to(browser, local, barge.event_id, barge.index)
    finally:
        await probe.close()
