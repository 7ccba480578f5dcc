"""One conversation: the browser's audio in, turns to our channel, spoken replies out.

Turn-taking, as the cloud service does it:

* The caller's audio goes through the :class:`~.vad.TurnDetector`. When their silence reaches the
  end-of-turn window, a turn starts with the next ``event_id``: the utterance is transcribed (or
  the early transcription started at ``speculate_ms`` of silence is used, if no voice came
  since), the transcript goes to the browser and, with the running history, to the channel.
* The channel's ``agent_response`` chunks for that ``event_id`` are split into sentences as they
  stream; each sentence is synthesised and sent as ``audio`` while the next is still being
  written. Chunks of any other ``event_id`` are dropped. If no text comes within
  ``cascade_timeout_s``, the same turn is sent again (same ``event_id``, same history), and after
  ``cascade_attempts`` sends the conversation fails, as with ElevenLabs.
* Barge-in: when the caller starts speaking while the agent's audio plays (or is still being
  sent), no further audio of that reply is sent (the client would play it, whatever its id), an
  ``interruption`` with a new, higher ``event_id`` tells the client to fade out what it queued,
  the reply is corrected to what was heard, and the history keeps only that. The caller's next
  transcript then interrupts the reply in the channel, by its higher ``event_id``. Speech that
  starts before any audio of the reply was sent cancels the turn quietly and is merged with it.

Every frame to the browser goes through one writer task, in order; audio frames of a turn that
was stopped are dropped even if they were already queued.

Each step of turn-taking is also announced as an :class:`EngineEvent` (``on_event``), so that tests and
benchmarks can follow a conversation by what the engine did instead of by the clock.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import WSCloseCode, WSMsgType, web

from voice_channel.local_engine import convai
from voice_channel.local_engine.audio import INPUT_RATE, Playout, b64decode_pcm, b64encode_pcm, seconds
from voice_channel.local_engine.backchannel import IgnoreTerms
from voice_channel.local_engine.config import LocalEngineConfig
from voice_channel.local_engine.speech import SpeechModels
from voice_channel.local_engine.stt import Transcript
from voice_channel.local_engine.tts import split_sentences
from voice_channel.local_engine.upstream import Upstream, UpstreamError
from voice_channel.local_engine.vad import (
    SpeechDiscarded,
    SpeechEnded,
    SpeechPaused,
    SpeechResumed,
    SpeechStarted,
    TurnDetector,
    make_classifier,
)

__all__ = ["EngineEvent", "EngineSession", "TurnMetrics"]

_PIECE_S = 0.1  # agent audio is sent in 100 ms frames
_CLOSE_REASON_BYTES = 120  # a WebSocket close reason holds at most 123 bytes


class _CascadeFailed(Exception):
    pass


@dataclass(frozen=True)
class EngineEvent:
    """One step of a conversation's turn-taking, as the engine took it.

    ``kind`` is one of:

    * ``speech_started``: the VAD heard the caller start (``event_id`` is the turn that was current, if any);
    * ``speech_ended``: the VAD's end of speech; a turn with ``event_id`` starts;
    * ``turn_continued``: speech came before any audio of turn ``event_id``, which is merged into the next;
    * ``interrupted``: the caller spoke over the audio of turn ``event_id`` (barge-in);
    * ``backchannel_held``: with ignore terms, speech over turn ``event_id``'s audio waits for its words;
    * ``backchannel_ignored``: those words were an ignore term: turn ``event_id`` goes on, no new turn;
    * ``transcript_sent``: turn ``event_id``'s transcript went to the channel;
    * ``first_audio``: the first audio of turn ``event_id``'s reply went to the browser;
    * ``turn_done``: turn ``event_id`` ended (its audio all sent, or it was stopped);
    * ``played_out``: the browser has played turn ``event_id``'s audio to the end (by the engine's playout clock).
    """

    kind: str
    conversation_id: str
    event_id: int | None = None
    at: float = field(default_factory=time.monotonic)


@dataclass
class TurnMetrics:
    """Latency of one turn, in seconds from the end of the caller's speech."""

    event_id: int
    transcript: str = ""
    speculative: bool = False
    stt_s: float | None = None
    end_of_turn_s: float | None = None
    transcript_s: float | None = None
    first_text_s: float | None = None
    first_audio_s: float | None = None
    tts_first_s: float | None = None
    sends: int = 0
    interrupted: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {key: round(value, 4) if isinstance(value, float) else value for key, value in self.__dict__.items()}


@dataclass(eq=False)
class _Turn:
    event_id: int
    pcm: bytes
    text: str | None
    speech_end: float | None
    transcription: asyncio.Future[Transcript] | None = None
    metrics: TurnMetrics = field(init=False)
    responses: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    reply: list[str] = field(default_factory=list)
    playout: Playout = field(default_factory=Playout)
    task: asyncio.Task[None] | None = None
    user_item: dict[str, str] | None = None
    agent_item: dict[str, str] | None = None
    agent_response_sent: bool = False
    stopped: bool = False
    #: Reply text received but not yet a complete sentence.
    pending: str = ""

    def __post_init__(self) -> None:
        self.metrics = TurnMetrics(self.event_id)

    @property
    def reply_text(self) -> str:
        return "".join(self.reply).strip()

    def since_speech(self, now: float) -> float | None:
        return None if self.speech_end is None else now - self.speech_end


@dataclass(eq=False)
class _Speculation:
    size: int
    future: asyncio.Future[Transcript]


def _consume(future: asyncio.Future[Any]) -> None:
    """Done callback of a future whose result may never be read: keep asyncio quiet about it."""
    if not future.cancelled():
        future.exception()


class EngineSession:
    """The stand-in's side of one browser conversation; :meth:`run` until the socket closes."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        models: SpeechModels,
        config: LocalEngineConfig,
        *,
        conversation_id: str,
        init: dict[str, Any],
        on_metrics: Callable[[TurnMetrics], None] | None = None,
        on_event: Callable[[EngineEvent], None] | None = None,
    ) -> None:
        self.ws = ws
        self.models = models
        self.config = config
        self.conversation_id = conversation_id
        self.init = init
        self.log = structlog.get_logger("voice_channel.local_engine").bind(conversation_id=conversation_id)
        self._on_metrics = on_metrics
        self._on_event = on_event
        self.detector = TurnDetector(
            make_classifier(config.vad),
            end_of_turn_ms=config.end_of_turn_ms,
            speculate_ms=config.speculate_ms,
            start_of_speech_ms=config.start_of_speech_ms,
            min_speech_ms=config.min_speech_ms,
            preroll_ms=config.preroll_ms,
        )
        self.upstream = Upstream(
            config.channel_url,
            api_key=config.api_key.get_secret_value(),
            conversation_id=conversation_id,
            on_frame=self._on_upstream_frame,
            ping_interval_s=config.upstream_ping_interval_s,
        )
        self.history: list[dict[str, str]] = []
        self.turn_count = 0
        self.dropped_responses: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self._ping_ids = itertools.count(1)
        self._ping_sent: dict[int, float] = {}
        self._rtt_ms: float | None = None
        self._turn: _Turn | None = None
        self._carry: _Turn | None = None
        self._speculation: _Speculation | None = None
        self._outbox: asyncio.Queue[tuple[dict[str, Any], _Turn | None]] = asyncio.Queue()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False
        self._closing: asyncio.Task[None] | None = None
        self.keywords = [*config.keywords, *self._client_keywords(init)]
        self.ignore_terms = IgnoreTerms(config.interruption_ignore_terms)
        #: The turn whose barge-in waits for the words of the speech over it (ignore terms), and that speech's size.
        self._held: _Turn | None = None
        self._held_bytes = 0

    @staticmethod
    def _client_keywords(init: dict[str, Any]) -> list[str]:
        override = init.get("conversation_config_override")
        asr = override.get("asr") if isinstance(override, dict) else None
        keywords = asr.get("keywords") if isinstance(asr, dict) else None
        if not isinstance(keywords, list):
            return []
        return [word for word in keywords if isinstance(word, str) and word.strip()][:100]

    # --- lifecycle -------------------------------------------------------------------------------

    async def run(self) -> None:
        structlog.contextvars.bind_contextvars(conversation_id=self.conversation_id)
        try:
            await self.upstream.connect()
        except UpstreamError as exc:
            self.log.warning("local_engine_upstream_failed", error=str(exc))
            await self._close_ws(WSCloseCode.INTERNAL_ERROR, str(exc))
            return
        self.log.info("local_engine_conversation_started", channel=self.config.channel_url)
        # The client takes the first frame it receives as the handshake: nothing may precede it.
        await self.ws.send_str(json.dumps(convai.metadata(self.conversation_id, output_rate=self.models.output_rate)))
        self._spawn(self._write_loop(), "writer")
        self._spawn(self._upstream_loop(), "upstream")
        if self.config.ping_interval_s:
            self._spawn(self._ping_loop(), "pinger")
        try:
            await self._receive_loop()
        finally:
            await self.close()

    async def close(self) -> None:
        """Stop every task (awaited), say ``close`` to the channel, close the browser's socket.

        Any number of callers may wait for it; the work runs once, shielded from their cancellation.
        """
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_task(self._close())
        await asyncio.shield(self._closing)

    async def _close(self) -> None:
        self._closed = True
        if self._turn is not None:
            self._stop(self._turn)
        # Goodbye first: cancelling the reader of an aiohttp client socket marks it aborted.
        await self.upstream.say_goodbye()
        pending = [task for task in self._tasks if task is not asyncio.current_task()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await self.upstream.disconnect()
        if not self.ws.closed:
            await self.ws.close()
        self.log.info("local_engine_conversation_ended", turns=self.turn_count)

    def _spawn(self, coroutine: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coroutine, name=f"local-engine-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _event(self, kind: str, event_id: int | None = None) -> None:
        if self._on_event is not None:
            self._on_event(EngineEvent(kind, self.conversation_id, event_id))

    async def _close_ws(self, code: int, reason: str) -> None:
        message = reason.encode("utf-8")[:_CLOSE_REASON_BYTES]
        if not self.ws.closed:
            await self.ws.close(code=code, message=message)

    # --- browser side ------------------------------------------------------------------------------

    async def _receive_loop(self) -> None:
        async for message in self.ws:
            if message.type is not WSMsgType.TEXT:
                continue
            try:
                data = json.loads(message.data)
            except ValueError:
                self.log.warning("local_engine_frame_malformed", size=len(message.data))
                continue
            if not isinstance(data, dict):
                continue
            chunk = data.get("user_audio_chunk")
            if isinstance(chunk, str):
                self._on_audio(b64decode_pcm(chunk))
                continue
            kind = data.get("type")
            if kind == "pong":
                sent = self._ping_sent.pop(data.get("event_id"), None)  # type: ignore[arg-type]
                if sent is not None:
                    self._rtt_ms = (time.monotonic() - sent) * 1000
            elif kind == "user_message" and isinstance(data.get("text"), str) and data["text"].strip():
                self._interrupt_for_new_input()
                self._start_turn(b"", text=data["text"].strip(), speech_end=None)
            else:  # user_activity, contextual_update, feedback, ...: nothing to do for a stand-in
                self.log.debug("local_engine_client_event", type=str(kind)[:64])

    def _send(self, frame: dict[str, Any], turn: _Turn | None = None) -> None:
        """Queue a frame for the browser; a stopped turn's frames are dropped when their turn comes."""
        self._outbox.put_nowait((frame, turn))

    async def _write_loop(self) -> None:
        while True:
            frame, turn = await self._outbox.get()
            try:
                if (turn is None or not turn.stopped) and not self.ws.closed:
                    await self.ws.send_str(json.dumps(frame))
            finally:
                self._outbox.task_done()

    async def _ping_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.ping_interval_s)
            ping_id = next(self._ping_ids)
            self._ping_sent[ping_id] = time.monotonic()
            rtt = None if self._rtt_ms is None else round(self._rtt_ms)
            self._send(convai.ping(ping_id, rtt))

    # --- channel side ------------------------------------------------------------------------------

    async def _upstream_loop(self) -> None:
        try:
            await self.upstream.run()
        except (ConnectionError, ValueError) as exc:
            self.log.warning("local_engine_upstream_lost", error=str(exc))
        if not self._closed:
            self.log.info("local_engine_channel_closed_conversation")
            await self._close_ws(WSCloseCode.OK, "the agent ended the conversation")

    def _on_upstream_frame(self, frame: dict[str, Any]) -> None:
        if frame.get("type") != "agent_response":
            return
        turn = self._turn
        if turn is not None and not turn.stopped and frame.get("event_id") == turn.event_id:
            turn.responses.put_nowait(frame)
        else:  # a superseded turn's chunk: ElevenLabs drops these silently
            self.dropped_responses.append(frame)

    # --- turn-taking -------------------------------------------------------------------------------

    def _on_audio(self, pcm: bytes) -> None:
        for event in self.detector.feed(pcm):
            if isinstance(event, SpeechStarted):
                self._event("speech_started", None if self._turn is None else self._turn.event_id)
                audible = self._audible_turn()
                if self.ignore_terms and audible is not None:
                    # It may be a backchannel: the reply goes on until the words say otherwise.
                    self._held, self._held_bytes = audible, 0
                    self._event("backchannel_held", audible.event_id)
                else:
                    self._interrupt_for_new_input()
            elif self._held is not None and isinstance(event, SpeechEnded):
                held, self._held = self._held, None
                self._speculation = None
                self._spawn(self._decide_backchannel(held, event), f"backchannel-{held.event_id}")
            elif self._held is not None and isinstance(event, SpeechDiscarded):
                self._held = None  # a click or a cough: the reply goes on
            elif self._held is not None:
                pass  # no early transcription of speech that may be a backchannel
            elif isinstance(event, SpeechPaused):
                running = self._speculation is not None and not self._speculation.future.done()
                if not running and self._carry is None:
                    future = self.models.transcribe_soon(event.pcm, self._stt_prompt())
                    future.add_done_callback(_consume)
                    self._speculation = _Speculation(len(event.pcm), future)
            elif isinstance(event, SpeechResumed):
                self._speculation = None
            elif isinstance(event, SpeechEnded):
                self._start_turn(event.pcm, text=None, speech_end=event.speech_end, decided=event.decided)
                self._event("speech_ended", self._turn.event_id if self._turn is not None else None)
            elif isinstance(event, SpeechDiscarded) and self._carry is not None:
                # The "barge-in" was a click or a cough: answer the utterance it cancelled after all.
                carry, self._carry = self._carry, None
                self._start_turn(carry.pcm, text=carry.text, speech_end=carry.speech_end, merge=False)

        if self._held is not None:
            self._held_bytes += len(pcm)
            if self._held_bytes / 2 / INPUT_RATE * 1000 > self.config.backchannel_max_ms:
                # Longer than any backchannel: a real barge-in, no need to wait for the words.
                self._held = None
                self._interrupt_for_new_input()

    def _audible_turn(self) -> _Turn | None:
        """The current turn if the caller can hear its reply (its audio started, and it is sending or playing)."""
        turn = self._turn
        if turn is None or turn.stopped or turn.playout.started is None:
            return None
        running = turn.task is not None and not turn.task.done()
        return turn if running or turn.playout.playing() else None

    async def _decide_backchannel(self, held: _Turn, event: SpeechEnded) -> None:
        """Speech over ``held``'s reply ended: an ignore term leaves the reply alone, anything else is a turn."""
        try:
            text = (await self.models.transcribe_soon(event.pcm, self._stt_prompt())).text.strip()
        except Exception as exc:  # the reply goes on; the caller can say it again
            self.log.warning("local_engine_stt_failed", error=str(exc))
            return
        if self.ignore_terms.matches(text):
            self.log.info("local_engine_backchannel_ignored", event_id=held.event_id, transcript=text)
            self._event("backchannel_ignored", held.event_id)
            return
        if not text:
            self.log.info("local_engine_no_words", audio_s=round(seconds(event.pcm, INPUT_RATE), 2))
            return
        self._interrupt_for_new_input()
        self._start_turn(event.pcm, text=text, speech_end=event.speech_end, decided=event.decided)
        self._event("speech_ended", self._turn.event_id if self._turn is not None else None)

    def _interrupt_for_new_input(self) -> None:
        turn = self._turn
        if turn is None or turn.stopped:
            return
        running = turn.task is not None and not turn.task.done()
        if turn.playout.started is not None and (running or turn.playout.playing()):
            self._interrupt(turn)
        elif running:
            # Nothing of the reply was sent yet: the caller was not finished. Merge the two.
            self._stop(turn)
            self._carry = turn
            self._forget(turn)
            self.log.info("local_engine_turn_continued", event_id=turn.event_id)
            self._event("turn_continued", turn.event_id)

    def _stop(self, turn: _Turn) -> None:
        turn.stopped = True
        if turn.task is not None:
            turn.task.cancel()

    def _forget(self, turn: _Turn) -> None:
        for item in (turn.user_item, turn.agent_item):
            if item is not None and item in self.history:
                self.history.remove(item)

    def _interrupt(self, turn: _Turn) -> None:
        heard = turn.playout.heard()
        full = turn.reply_text
        self._stop(turn)
        turn.metrics.interrupted = True
        interruption_id = next(self._ids)
        self._send(convai.interruption(interruption_id))
        if full and not turn.agent_response_sent:
            self._send(convai.agent_response(full, turn.event_id))
            turn.agent_response_sent = True
        if heard != full:
            self._send(convai.correction(full, heard, turn.event_id))
        if turn.agent_item is not None and turn.agent_item in self.history:
            if heard:
                turn.agent_item["content"] = heard
            else:
                self.history.remove(turn.agent_item)
        elif heard:
            self.history.append({"role": "agent", "content": heard})
        self.log.info(
            "local_engine_barge_in", event_id=turn.event_id, interruption_id=interruption_id, heard_chars=len(heard)
        )
        self._event("interrupted", turn.event_id)

    def _start_turn(
        self,
        pcm: bytes,
        *,
        text: str | None,
        speech_end: float | None,
        decided: float | None = None,
        merge: bool = True,
    ) -> None:
        carry = self._carry if merge else None
        self._carry = None
        speculation, self._speculation = self._speculation, None
        previous = self._turn
        if previous is not None and not previous.stopped and previous.task is not None and not previous.task.done():
            self._stop(previous)  # defensive: a turn only ever speaks while it is the current one
        if carry is not None and text is None:
            pcm = carry.pcm + pcm
        turn = _Turn(next(self._ids), pcm, text, speech_end)
        if decided is not None and speech_end is not None:
            turn.metrics.end_of_turn_s = decided - speech_end
        if text is None:
            if carry is None and speculation is not None and speculation.size <= len(pcm):
                turn.transcription = speculation.future
                turn.metrics.speculative = True
            else:
                turn.transcription = self.models.transcribe_soon(pcm, self._stt_prompt())
                turn.transcription.add_done_callback(_consume)
        self._turn = turn
        self.turn_count += 1
        turn.task = self._spawn(self._run_turn(turn), f"turn-{turn.event_id}")

    def _stt_prompt(self) -> str:
        """What Whisper is told came before: the keywords and the agent's last words."""
        parts = []
        if self.keywords:
            parts.append(", ".join(self.keywords) + ".")
        last_agent = next((item["content"] for item in reversed(self.history) if item["role"] == "agent"), "")
        parts.append(last_agent)
        return " ".join(part for part in parts if part)

    async def _run_turn(self, turn: _Turn) -> None:
        structlog.contextvars.bind_contextvars(event_id=turn.event_id)
        metrics = turn.metrics
        try:
            if turn.text is None:
                assert turn.transcription is not None
                transcript = await turn.transcription
                turn.text = transcript.text
                metrics.stt_s = transcript.seconds
            metrics.transcript = turn.text
            if not turn.text.strip():
                self.log.info("local_engine_no_words", audio_s=round(seconds(turn.pcm, INPUT_RATE), 2))
                return
            metrics.transcript_s = turn.since_speech(time.monotonic())
            self._send(convai.user_transcript(turn.text, turn.event_id), turn)
            turn.user_item = {"role": "user", "content": turn.text}
            self.history.append(turn.user_item)
            sentences: asyncio.Queue[str | None] = asyncio.Queue()
            async with asyncio.TaskGroup() as group:
                group.create_task(self._speak(turn, sentences))
                await self._collect(turn, sentences)
        except* _CascadeFailed:
            message = f"the channel sent no text for event_id {turn.event_id} after {metrics.sends} sends"
            self.log.error("local_engine_cascade_failed", sends=metrics.sends)
            self._send(convai.error(message, error_type="cascade_failed"))
            self._spawn(self._fail(message), "fail")
        except* (ConnectionError, OSError) as group:  # the channel went away mid-turn
            self.log.warning("local_engine_upstream_send_failed", error=str(group.exceptions[0]))
        except* Exception:
            self.log.exception("local_engine_turn_failed")
        finally:
            if self._on_metrics is not None and metrics.transcript:
                self._on_metrics(metrics)
            self.log.info("local_engine_turn_done", **metrics.as_dict())
            self._event("turn_done", turn.event_id)
            if not turn.stopped and turn.playout.started is not None:
                self._spawn(self._played_out(turn), f"played-out-{turn.event_id}")

    async def _played_out(self, turn: _Turn) -> None:
        """Announce when the browser has played the turn's audio to the end (by the playout clock)."""
        await asyncio.sleep(turn.playout.ahead())  # the client's real-time playback, not synchronisation
        if not turn.stopped:
            self._event("played_out", turn.event_id)

    async def _fail(self, message: str) -> None:
        await self._outbox.join()  # the error frame goes out before the close
        await self._close_ws(WSCloseCode.INTERNAL_ERROR, message)

    async def _collect(self, turn: _Turn, sentences: asyncio.Queue[str | None]) -> None:
        """Send the turn to the channel (again, on a cascade timeout) and split its reply into sentences."""
        history = [dict(item) for item in self.history]
        metrics = turn.metrics
        got_text = False
        for _ in range(self.config.cascade_attempts):
            metrics.sends += 1
            if metrics.sends > 1:
                self.log.warning("local_engine_cascade_resend", sends=metrics.sends)
            await self.upstream.send_transcript(turn.event_id, history)
            if metrics.sends == 1:
                self._event("transcript_sent", turn.event_id)
            try:
                async with asyncio.timeout(self.config.cascade_timeout_s):
                    while not got_text:
                        frame = await turn.responses.get()
                        got_text = self._take(turn, frame, sentences)
                break
            except TimeoutError:
                continue
        else:
            raise _CascadeFailed
        while not self._finished(turn):
            self._take(turn, await turn.responses.get(), sentences)

    def _finished(self, turn: _Turn) -> bool:
        return turn.agent_item is not None

    def _take(self, turn: _Turn, frame: dict[str, Any], sentences: asyncio.Queue[str | None]) -> bool:
        """Add one ``agent_response`` chunk; return whether the turn has an answer (text or final)."""
        content = frame.get("content")
        if isinstance(content, str) and content:
            if not turn.reply:
                turn.metrics.first_text_s = turn.since_speech(time.monotonic())
            turn.reply.append(content)
            done, turn.pending = split_sentences(turn.pending + content)
            for sentence in done:
                sentences.put_nowait(sentence)
        if frame.get("is_final"):
            rest, turn.pending = turn.pending.strip(), ""
            if rest:
                sentences.put_nowait(rest)
            sentences.put_nowait(None)
            full = turn.reply_text
            turn.agent_item = {"role": "agent", "content": full}
            if full:
                self.history.append(turn.agent_item)
                self._send(convai.agent_response(full, turn.event_id), turn)
                turn.agent_response_sent = True
            return True
        return bool(turn.reply)

    async def _speak(self, turn: _Turn, sentences: asyncio.Queue[str | None]) -> None:
        rate = self.models.output_rate
        piece_bytes = int(rate * _PIECE_S) * 2
        lead = self.config.audio_lead_s
        while (sentence := await sentences.get()) is not None:
            started = time.monotonic()
            pcm = await self.models.synthesize(sentence)
            if turn.metrics.tts_first_s is None:
                turn.metrics.tts_first_s = time.monotonic() - started
            if not pcm:
                continue
            sentence_start: float | None = None
            for offset in range(0, len(pcm), piece_bytes):
                ahead = turn.playout.ahead()
                if ahead > lead:
                    # Real-time pacing: what was sent cannot be taken back, so keep the lead short.
                    await asyncio.sleep(ahead - lead)
                piece = pcm[offset : offset + piece_bytes]
                begins = turn.playout.queue(seconds(piece, rate))
                if sentence_start is None:
                    sentence_start = begins
                self._send(convai.audio(b64encode_pcm(piece), turn.event_id), turn)
                if turn.metrics.first_audio_s is None:
                    self._first_audio(turn)
            assert sentence_start is not None
            turn.playout.sentence(sentence, sentence_start, seconds(pcm, rate))

    def _first_audio(self, turn: _Turn) -> None:
        metrics = turn.metrics
        metrics.first_audio_s = turn.since_speech(time.monotonic())
        self._send(convai.metrics(metrics.as_dict()), turn)
        self._event("first_audio", turn.event_id)
        self.log.info(
            "local_engine_first_audio",
            speech_to_transcript_s=metrics.transcript_s,
            speech_to_first_text_s=metrics.first_text_s,
            speech_to_first_audio_s=metrics.first_audio_s,
            speculative=metrics.speculative,
        )
