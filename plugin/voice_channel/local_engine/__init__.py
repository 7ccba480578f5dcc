"""A local stand-in for the ElevenLabs side of a voice conversation: real speech, no cloud.

``voice-channel local-engine`` (the ``local`` extra) serves what the official
``@elevenlabs/client`` expects in its WebSocket mode (``signedUrl``, subprotocol ``convai``) and,
per conversation, plays ElevenLabs toward our channel: it opens the Speech Engine WebSocket with a
JWT signed like ElevenLabs signs it, sends ``init`` and ``user_transcript`` frames with the running
history and increasing ``event_id`` s, and speaks the ``agent_response`` chunks as they stream.

In between it does what the cloud does: voice activity detection and turn-taking
(:mod:`.vad`), speech-to-text with Whisper tiny.en (:mod:`.stt`), text-to-speech with piper or
espeak-ng (:mod:`.tts`), barge-in, and the cascade re-send of a turn that got no text in time
(:mod:`.engine`). Models come from PyPI packages, load once and run off the event loop.

Modules: :mod:`.config` (settings), :mod:`.convai` (browser-side frames), :mod:`.audio` (PCM
helpers, playout clock), :mod:`.models` (locating and checking model files), :mod:`.speech`
(models loaded once, executors), :mod:`.upstream` (the channel side), :mod:`.engine` (one
conversation), :mod:`.app` (the aiohttp application).
"""

from voice_channel.local_engine.config import LocalEngineConfig

__all__ = ["LocalEngineConfig"]
