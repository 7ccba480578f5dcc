"""A browser stand-in for tests and benchmarks: the ``@elevenlabs/client`` WebSocket protocol in Python.

It does what the official client does in WebSocket mode (verified against 1.25.0): appends
``source`` and ``version`` to the signed URL, asks for subprotocol ``convai``, sends
``conversation_initiation_client_data``, expects ``conversation_initiation_metadata`` first,
then streams the microphone as ``{"user_audio_chunk": …}`` frames of 1024 bytes (32 ms at 16 kHz)
*continuously and in real time*, silence included, and answers each ``ping`` with a ``pong``.
Everything received is recorded with its arrival time; tests wait on conditions over it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np

__all__ = ["ConvaiProbe", "Received", "Utterance", "speech_bounds"]

CHUNK_BYTES = 1024
CHUNK_S = CHUNK_BYTES / 2 / 16000


@dataclass
class Received:
    at: float
    frame: dict[str, Any]

    @property
    def type(self) -> str:
        return str(self.frame.get("type"))

    def event(self) -> dict[str, Any]:
        """The ``…_event`` object of the frame (its payload)."""
        for key, value in self.frame.items():
            if key.endswith("_event") and isinstance(value, dict):
                return value
        return {}


@dataclass
class Utterance:
    pcm: bytes
    #: Wall times (``time.monotonic``) at which the first and last voiced samples were sent.
    speech_start: float | None = None
    speech_end: float | None = None
    sent: asyncio.Event = field(default_factory=asyncio.Event)


def speech_bounds(pcm: bytes, threshold: int = 600) -> tuple[int, int]:
    """Byte offsets of the first and last samples louder than ``threshold`` (whole PCM if none)."""
    samples = np.abs(np.frombuffer(pcm, dtype="<i2").astype(np.int32))
    loud = np.nonzero(samples > threshold)[0]
    if len(loud) == 0:
        return 0, len(pcm)
    return int(loud[0]) * 2, int(loud[-1]) * 2


class ConvaiProbe:
    """One conversation with a ``convai`` server, as a browser with a microphone would hold it."""

    def __init__(self, signed_url: str, *, init: dict[str, Any] | None = None, answer_pings: bool = True) -> None:
        separator = "&" if "?" in signed_url else "?"
        self.url = f"{signed_url}{separator}source=js_sdk&version=1.25.0"
        self.init = init or {
            "type": "conversation_initiation_client_data",
            "conversation_config_override": {"agent": {}, "tts": {}, "conversation": {}},
            "source_info": {"source": "js_sdk", "version": "1.25.0"},
        }
        self.answer_pings = answer_pings
        self.received: list[Received] = []
        self.metadata: dict[str, Any] | None = None
        self.close_code: int | None = None
        self.close_reason: str = ""
        self.closed = asyncio.Event()
        self._changed = asyncio.Condition()
        self._queue: asyncio.Queue[Utterance] = asyncio.Queue()
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.chunks_sent = 0

    async def __aenter__(self) -> ConvaiProbe:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def connect(self) -> None:
        self._session = aiohttp.ClientSession()
        try:
            self._ws = await self._session.ws_connect(self.url, protocols=("convai",))
        except BaseException:
            await self._session.close()
            raise
        if self._ws.protocol != "convai":
            raise ConnectionError(f"server did not echo subprotocol convai (got {self._ws.protocol!r})")
        await self._ws.send_str(json.dumps(self.init))
        first = await self._ws.receive(timeout=30)
        if first.type is not aiohttp.WSMsgType.TEXT:
            self.close_code = self._ws.close_code
            self.close_reason = str(first.extra or "")
            self.closed.set()
            raise ConnectionError(f"closed before the metadata: {self.close_code} {self.close_reason}")
        data = json.loads(first.data)
        if data.get("type") != "conversation_initiation_metadata":
            raise ConnectionError(f"first frame is not conversation_initiation_metadata: {data.get('type')}")
        self.metadata = data["conversation_initiation_metadata_event"]
        self._tasks = [asyncio.create_task(self._read()), asyncio.create_task(self._microphone())]

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._ws is not None and not self._ws.closed:
            await self._ws.close()
        if self._session is not None:
            await self._session.close()

    # --- microphone ---

    def say(self, pcm: bytes) -> Utterance:
        """Queue 16 kHz s16le speech; the microphone plays it after what is queued, then silence."""
        utterance = Utterance(pcm)
        self._queue.put_nowait(utterance)
        return utterance

    async def _microphone(self) -> None:
        """Real time: one 32 ms chunk per 32 ms of the wall clock, scheduled against drift."""
        assert self._ws is not None
        silence = bytes(CHUNK_BYTES)
        start = time.monotonic()
        current: Utterance | None = None
        offset = 0
        bounds = (0, 0)
        while not self._ws.closed:
            if current is None and not self._queue.empty():
                current, offset = self._queue.get_nowait(), 0
                bounds = speech_bounds(current.pcm)
            if current is not None:
                chunk = current.pcm[offset : offset + CHUNK_BYTES].ljust(CHUNK_BYTES, b"\0")
                first, last = bounds
                now = time.monotonic()
                if offset <= first < offset + CHUNK_BYTES:
                    current.speech_start = now
                if offset <= last < offset + CHUNK_BYTES:
                    current.speech_end = now
                offset += CHUNK_BYTES
                if offset >= len(current.pcm):
                    current.sent.set()
                    current = None
            else:
                chunk = silence
            await self._ws.send_str(json.dumps({"user_audio_chunk": base64.b64encode(chunk).decode("ascii")}))
            self.chunks_sent += 1
            delay = start + self.chunks_sent * CHUNK_S - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)  # the microphone's own pace, not synchronisation

    # --- receiving ---

    async def _read(self) -> None:
        assert self._ws is not None
        try:
            while True:
                message = await self._ws.receive()
                if message.type is aiohttp.WSMsgType.CLOSE:
                    self.close_reason = str(message.extra or "")
                if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                    return
                if message.type is not aiohttp.WSMsgType.TEXT:
                    continue
                frame = json.loads(message.data)
                if frame.get("type") == "ping" and self.answer_pings:
                    event_id = frame.get("ping_event", {}).get("event_id")
                    await self._ws.send_str(json.dumps({"type": "pong", "event_id": event_id}))
                async with self._changed:
                    self.received.append(Received(time.monotonic(), frame))
                    self._changed.notify_all()
        finally:
            self.close_code = self._ws.close_code
            self.closed.set()
            async with self._changed:
                self._changed.notify_all()

    async def wait_for(
        self, predicate: Callable[[Received], bool], *, after: int = 0, timeout: float = 30.0
    ) -> Received:
        """The first received frame from index ``after`` on that satisfies ``predicate``."""
        async with asyncio.timeout(timeout), self._changed:
            index = after
            while True:
                while index < len(self.received):
                    item = self.received[index]
                    index += 1
                    if predicate(item):
                        return item
                if self.closed.is_set():
                    raise ConnectionError(f"closed ({self.close_code}) while waiting")
                await self._changed.wait()

    async def wait_type(self, kind: str, *, after: int = 0, timeout: float = 30.0, **fields: Any) -> Received:
        def match(item: Received) -> bool:
            if item.type != kind:
                return False
            event = item.event()
            return all(event.get(key) == value for key, value in fields.items())

        return await self.wait_for(match, after=after, timeout=timeout)

    def of_type(self, kind: str) -> list[Received]:
        return [item for item in self.received if item.type == kind]

    def playback_end(self, *, after: int = 0) -> float | None:
        """When the browser would finish playing the audio received from index ``after`` on.

        It plays audio back to back as it arrives, at the rate given in the metadata.
        """
        assert self.metadata is not None
        rate = int(self.metadata["agent_output_audio_format"].split("_")[1])
        end: float | None = None
        for item in self.received[after:]:
            if item.type == "audio":
                duration = len(base64.b64decode(item.event()["audio_base_64"])) / 2 / rate
                end = max(item.at, end or 0.0) + duration
        return end

    async def listen(self, *, after: int = 0, quiet_s: float = 0.8) -> None:
        """Wait, as a listener does, until the agent's audio from index ``after`` on has played out.

        ``quiet_s`` of silence must follow: on a loaded machine the next sentence's audio may come
        a little after the previous one finished playing.
        """
        while True:
            end = self.playback_end(after=after) or time.monotonic()
            remaining = end + quiet_s - time.monotonic()
            if remaining <= 0:
                return
            await asyncio.sleep(remaining)  # real-time playback being simulated

    def audio(self, event_id: int | None = None) -> bytes:
        """The agent audio received (for one ``event_id``), concatenated."""
        return b"".join(
            base64.b64decode(item.event()["audio_base_64"])
            for item in self.of_type("audio")
            if event_id is None or item.event().get("event_id") == event_id
        )


class SpeechMaker:
    """Deterministic test speech at 16 kHz: piper with its sampling noise off, or espeak-ng.

    Blocking; load once. What a test says through the probe is generated here, in the test.
    """

    def __init__(self, voice: str = "piper") -> None:
        from voice_channel.local_engine.models import espeak_path, piper_voice_files

        self.voice = voice
        if voice == "piper":
            from piper import PiperVoice, SynthesisConfig

            files = piper_voice_files()
            self._piper = PiperVoice.load(files.model, files.config)
            self._config = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
        else:
            self._espeak = espeak_path()

    def __call__(self, text: str, *, pad_s: float = 0.3) -> bytes:
        import subprocess

        from voice_channel.local_engine.audio import resample

        if self.voice == "piper":
            chunks = list(self._piper.synthesize(text, self._config))
            pcm = b"".join(chunk.audio_int16_bytes for chunk in chunks)
            rate = chunks[0].sample_rate if chunks else 22050
        else:
            raw = subprocess.run(
                [self._espeak, "-v", "en-us", "-s", "130", "--stdout", text], check=True, capture_output=True
            ).stdout
            pcm, rate = raw[44 : len(raw) - (len(raw) - 44) % 2], 22050
        pad = bytes(int(pad_s * 16000) * 2)
        return pad + resample(pcm, rate, 16000) + pad
