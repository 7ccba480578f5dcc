"""voice-channel: real-time voice for agent runtimes through ElevenLabs Speech Engine.

The public API for plugin authors: :data:`hookimpl` and the runtime contract types.
"""

from voice_channel.markers import hookimpl
from voice_channel.runtime import (
    ConfirmationDecision,
    ConfirmationRequest,
    ConversationContext,
    Intent,
    Notice,
    Refusal,
    Runtime,
    RuntimeMessage,
    RuntimeSession,
    TextDelta,
)

__version__ = "0.1.0"

__all__ = [
    "ConfirmationDecision",
    "ConfirmationRequest",
    "ConversationContext",
    "Intent",
    "Notice",
    "Refusal",
    "Runtime",
    "RuntimeMessage",
    "RuntimeSession",
    "TextDelta",
    "__version__",
    "hookimpl",
]
