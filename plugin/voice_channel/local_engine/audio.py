"""PCM helpers and the playout clock of the agent's audio.

All PCM here is mono signed 16-bit little-endian. The browser sends 16 kHz; the agent's audio is
sent at the rate announced in ``conversation_initiation_metadata``.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field

import numpy as np

__all__ = ["INPUT_RATE", "Playout", "b64decode_pcm", "b64encode_pcm", "pcm_to_float", "resample", "seconds"]

INPUT_RATE = 16000


def seconds(pcm: bytes, rate: int) -> float:
    return len(pcm) / 2 / rate


def pcm_to_float(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0


def b64decode_pcm(data: str) -> bytes:
    pcm = base64.b64decode(data, validate=False)
    return pcm[: len(pcm) - len(pcm) % 2]  # a stray odd byte would misalign every later sample


def b64encode_pcm(pcm: bytes) -> str:
    return base64.b64encode(pcm).decode("ascii")


def resample(pcm: bytes, rate_in: int, rate_out: int) -> bytes:
    """Resample s16 PCM with FFmpeg's resampler (PyAV, installed with faster-whisper)."""
    if rate_in == rate_out or not pcm:
        return pcm
    import av  # imported here: only the optional extra has it

    resampler = av.AudioResampler(format="s16", layout="mono", rate=rate_out)
    frame = av.AudioFrame.from_ndarray(np.frombuffer(pcm, dtype="<i2").reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = rate_in
    out = resampler.resample(frame) + resampler.resample(None)
    return b"".join(piece.to_ndarray().astype("<i2").tobytes() for piece in out)


@dataclass
class _Piece:
    text: str
    start: float
    duration: float


@dataclass
class Playout:
    """Where the browser's playback of one reply is, estimated from what was sent and when.

    The client starts playing audio as it arrives and plays it back to back, so the queue ends at
    ``max(now, end) + duration`` after each piece. That is enough to pace sending and to say
    which words the caller heard when they barge in.
    """

    clock: object = field(default=time.monotonic)
    started: float | None = None
    end: float = 0.0
    sentences: list[_Piece] = field(default_factory=list)

    def now(self) -> float:
        return self.clock()  # type: ignore[operator]

    def queue(self, duration: float) -> float:
        """Account for ``duration`` seconds of audio sent now; return when it starts playing."""
        now = self.now()
        if self.started is None:
            self.started = now
        start = max(now, self.end)
        self.end = start + duration
        return start

    def sentence(self, text: str, start: float, duration: float) -> None:
        self.sentences.append(_Piece(text, start, duration))

    def ahead(self) -> float:
        """Seconds of audio queued at the client that have not played yet."""
        return max(0.0, self.end - self.now())

    def playing(self) -> bool:
        return self.started is not None and self.now() < self.end

    def heard(self) -> str:
        """The words played so far: whole sentences, and the played share of the current one."""
        now = self.now()
        words: list[str] = []
        for piece in self.sentences:
            if now >= piece.start + piece.duration:
                words.extend(piece.text.split())
            elif now > piece.start and piece.duration > 0:
                said = piece.text.split()
                words.extend(said[: int(len(said) * (now - piece.start) / piece.duration)])
        return " ".join(words)
