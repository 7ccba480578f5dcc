"""The browser side: frames of the conversation WebSocket that ``@elevenlabs/client`` speaks.

Verified against ``@elevenlabs/client`` 1.25.0 in WebSocket mode (``signedUrl``, subprotocol
``convai``, which the server must echo). The first frame the server sends must be
``conversation_initiation_metadata``, or the client hangs; every inbound frame must be text JSON
with a ``type``. The client sends ``{"user_audio_chunk": <base64>}`` (no ``type``) continuously,
answers ``ping`` with ``pong`` carrying the same ``event_id``, and plays every ``audio`` frame it
gets, whatever its ``event_id``: the server must stop sending an interrupted reply's audio itself.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "SUBPROTOCOL",
    "agent_response",
    "audio",
    "correction",
    "error",
    "interruption",
    "metadata",
    "metrics",
    "ping",
    "user_transcript",
]

SUBPROTOCOL = "convai"


def metadata(conversation_id: str, *, output_rate: int, input_rate: int = 16000) -> dict[str, Any]:
    return {
        "type": "conversation_initiation_metadata",
        "conversation_initiation_metadata_event": {
            "conversation_id": conversation_id,
            "agent_output_audio_format": f"pcm_{output_rate}",
            "user_input_audio_format": f"pcm_{input_rate}",
        },
    }


def user_transcript(text: str, event_id: int) -> dict[str, Any]:
    return {"type": "user_transcript", "user_transcription_event": {"user_transcript": text, "event_id": event_id}}


def agent_response(text: str, event_id: int) -> dict[str, Any]:
    return {"type": "agent_response", "agent_response_event": {"agent_response": text, "event_id": event_id}}


def correction(original: str, corrected: str, event_id: int) -> dict[str, Any]:
    return {
        "type": "agent_response_correction",
        "agent_response_correction_event": {
            "original_agent_response": original,
            "corrected_agent_response": corrected,
            "event_id": event_id,
        },
    }


def audio(b64: str, event_id: int) -> dict[str, Any]:
    return {"type": "audio", "audio_event": {"audio_base_64": b64, "event_id": event_id}}


def interruption(event_id: int) -> dict[str, Any]:
    return {"type": "interruption", "interruption_event": {"event_id": event_id}}


def ping(event_id: int, ping_ms: int | None) -> dict[str, Any]:
    return {"type": "ping", "ping_event": {"event_id": event_id, "ping_ms": ping_ms}}


def error(message: str, *, code: int = 1011, error_type: str = "local_engine_error") -> dict[str, Any]:
    return {"type": "error", "error_event": {"code": code, "message": message, "error_type": error_type}}


def metrics(values: dict[str, Any]) -> dict[str, Any]:
    """Per-turn latency figures. Not an ElevenLabs event: the client hands unknown types to ``onDebug``."""
    return {"type": "local_engine_metrics", "local_engine_metrics_event": values}
