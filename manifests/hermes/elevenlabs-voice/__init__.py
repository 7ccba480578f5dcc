"""Directory plugin for Hermes Agent: hands Hermes the register(ctx) of the voice_channel_hermes package.

Needs the package in Hermes's environment: pip install '.[hermes]' in a voice-channel checkout, or its wheel with [hermes].
"""

from __future__ import annotations

from typing import Any


def register(ctx: Any) -> None:
    try:
        from voice_channel_hermes import register as register_voice_channel
    except ImportError as exc:  # a clear message in Hermes's log instead of a bare ImportError
        raise ImportError(
            "the elevenlabs-voice plugin needs the voice-channel package in Hermes's environment: "
            "pip install '.[hermes]' in a voice-channel checkout, or its wheel with [hermes]"
        ) from exc
    register_voice_channel(ctx)
