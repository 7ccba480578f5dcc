"""Settings of the local engine (flags of ``voice-channel local-engine``, or built by ``demo``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from voice_channel.settings import Secret

__all__ = ["LocalEngineConfig"]


class LocalEngineConfig(BaseModel):
    """How the local engine listens, where it finds the channel, and how it takes turns."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    channel_url: str = Field(description="The channel's Speech Engine WebSocket, e.g. ws://127.0.0.1:8765/ws.")
    api_key: Secret = Field(
        description="The key the channel verifies JWTs with; also required on get-signed-url requests.",
        json_schema_extra={"sensitive": True},
    )
    host: str = Field("127.0.0.1", description="Interface to listen on.")
    port: int = Field(8770, ge=0, le=65535, description="TCP port; 0 picks a free port.")
    public_url: str | None = Field(
        None, description="Base ws:// URL put into signed URLs; default: the Host the request came to."
    )

    vad: Literal["webrtc", "silero"] = Field("webrtc", description="Voice activity detector.")
    end_of_turn_ms: int = Field(400, ge=100, le=3000, description="Silence that ends the caller's turn.")
    speculate_ms: int = Field(
        150, ge=0, le=3000, description="Silence after which transcription starts early (0: never)."
    )
    start_of_speech_ms: int = Field(120, ge=20, le=1000, description="Voiced audio that counts as speech (barge-in).")
    min_speech_ms: int = Field(200, ge=20, le=3000, description="Shorter utterances are ignored.")
    preroll_ms: int = Field(300, ge=0, le=2000, description="Audio kept from before the speech onset.")

    stt_window_s: float = Field(
        20.0,
        ge=5.0,
        le=30.0,
        description="Whisper's encoder window: shorter is faster, less accurate (30 is Whisper's own; see the README).",
    )
    stt_threads: int = Field(2, ge=1, le=64, description="CPU threads for Whisper.")
    keywords: list[str] = Field(default_factory=list, description="Words to bias speech recognition toward.")

    tts: Literal["auto", "piper", "espeak"] = Field("auto", description="Speech synthesiser; auto prefers piper.")
    output_rate: Literal[16000, 22050] = Field(16000, description="Agent audio sample rate sent to the browser.")
    audio_lead_s: float = Field(
        0.5, gt=0, le=10, description="How far ahead of playout agent audio is sent (what a barge-in must fade)."
    )

    interruption_ignore_terms: list[str] = Field(
        default_factory=list,
        description="Backchannels that do not interrupt the agent (the engine's turn.interruption_ignore_terms).",
    )
    backchannel_max_ms: int = Field(
        1500,
        ge=300,
        le=5000,
        description="With ignore terms, speech over the agent longer than this interrupts without waiting for words.",
    )

    cascade_timeout_s: float = Field(
        4.0, ge=0.5, le=15, description="A turn with no agent text by then is re-sent (same event_id)."
    )
    cascade_attempts: int = Field(3, ge=1, le=10, description="Sends of one turn before the conversation fails.")
    ping_interval_s: float = Field(5.0, ge=0, le=300, description="JSON pings to the browser (0: none).")
    upstream_ping_interval_s: float = Field(10.0, ge=0, le=300, description="Pings to the channel (0: none).")
    signed_url_ttl_s: float = Field(900.0, gt=0, le=86400, description="Lifetime of an unused signed URL.")

    @field_validator("channel_url")
    @classmethod
    def _websocket_url(cls, value: str) -> str:
        if not value.startswith(("ws://", "wss://")):
            raise ValueError("must be a ws:// or wss:// URL, e.g. ws://127.0.0.1:8765/ws")
        return value
