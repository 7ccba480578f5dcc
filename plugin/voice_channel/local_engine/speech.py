"""The speech models, loaded once per process, and the threads they run on.

Whisper and piper block, so each runs on its own single-thread executor: the event loop never
waits for them, a long reply being synthesised does not hold up the transcription of the next
utterance, and each model is only ever called from one thread.
"""

from __future__ import annotations

import asyncio
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import structlog

from voice_channel.local_engine.audio import resample
from voice_channel.local_engine.config import LocalEngineConfig
from voice_channel.local_engine.models import whisper_model_dir
from voice_channel.local_engine.stt import Transcriber, Transcript
from voice_channel.local_engine.tts import Synthesizer

__all__ = ["SpeechModels", "load_models"]

log = structlog.get_logger("voice_channel.local_engine")

# faster-whisper never needs the Hugging Face hub here: the model loads from a local directory.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@dataclass
class SpeechModels:
    transcriber: Transcriber
    synthesizer: Synthesizer
    output_rate: int
    timings: dict[str, float] = field(default_factory=dict)
    _stt_pool: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=1, thread_name_prefix="local-stt")
    )
    _tts_pool: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=1, thread_name_prefix="local-tts")
    )

    def transcribe_soon(self, pcm: bytes, prompt: str) -> asyncio.Future[Transcript]:
        """Queue a transcription on the STT thread; the returned future is the event loop's."""
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(self._stt_pool, self.transcriber.transcribe, pcm, prompt)

    async def synthesize(self, text: str) -> bytes:
        """PCM at :attr:`output_rate` for ``text``."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._tts_pool, self._synthesize, text)

    def _synthesize(self, text: str) -> bytes:
        pcm = self.synthesizer.synthesize(text)
        return resample(pcm, self.synthesizer.sample_rate, self.output_rate)

    def close(self) -> None:
        self._stt_pool.shutdown(wait=True, cancel_futures=True)
        self._tts_pool.shutdown(wait=True, cancel_futures=True)


def load_models(config: LocalEngineConfig) -> SpeechModels:
    """Load, check and warm up both models (blocking: seconds). Raises ``ModelError``."""
    started = time.perf_counter()
    transcriber = Transcriber(whisper_model_dir(), threads=config.stt_threads, window_s=config.stt_window_s)
    synthesizer = Synthesizer(config.tts)
    models = SpeechModels(transcriber, synthesizer, config.output_rate)
    warm = time.perf_counter()
    # The first call of each model is several times slower than the next ones; pay it now.
    speech = models._synthesize("Hello, I am ready.")
    transcriber.transcribe(resample(speech, config.output_rate, 16000), "Hello.")
    models.timings = {
        "stt_load_s": round(transcriber.load_seconds, 3),
        "tts_load_s": round(synthesizer.load_seconds, 3),
        "warm_up_s": round(time.perf_counter() - warm, 3),
        "total_s": round(time.perf_counter() - started, 3),
    }
    log.info("local_engine_models_loaded", tts=synthesizer.engine, **models.timings)
    return models
