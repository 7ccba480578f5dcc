"""Hermes Agent platform plugin: real-time voice through ElevenLabs Speech Engine.

Hermes loads this module through the ``hermes_agent.plugins`` entry point ``elevenlabs-voice``
(or through the directory plugin in ``manifests/hermes/``) and calls :func:`register`, which
registers the platform ``elevenlabs_voice``. The gateway then creates one
:class:`~voice_channel_hermes.adapter.ElevenLabsVoiceAdapter`, whose ``connect`` serves the voice
channel's WebSocket endpoint inside the gateway's event loop.

This module must stay importable without Hermes: it is also the package of the ``voice_channel``
plugin :mod:`voice_channel_hermes.voice_plugin`, which ``voice-channel plugins`` lists anywhere.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PLATFORM", "PLUGIN_NAME", "register"]

#: The platform name: the key under ``platforms:`` in Hermes's ``config.yaml``.
PLATFORM = "elevenlabs_voice"
#: The Hermes plugin name: what ``hermes plugins enable`` takes.
PLUGIN_NAME = "elevenlabs-voice"


def register(ctx: Any) -> None:
    """Hermes plugin entry: register the ``elevenlabs_voice`` platform and its tool policy."""
    from voice_channel_hermes.hermes_plugin import register_plugin

    register_plugin(ctx)
