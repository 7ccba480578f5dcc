"""``openclaw`` runtime: the voice channel as an operator client of the OpenClaw Gateway.

It speaks the Gateway WebSocket protocol (v4) with a signed Ed25519 device identity, sends each
utterance with ``chat.send`` to the session ``agent:<agentId>:elevenlabs:<conversation id>``,
streams that run's assistant deltas, aborts the run when the caller interrupts, and turns the
run's exec and plugin approvals into spoken confirmations.
"""

__all__ = ["OpenClawSettings"]

from voice_channel_openclaw.settings import OpenClawSettings
