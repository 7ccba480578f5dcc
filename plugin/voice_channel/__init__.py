"""voice-channel: real-time voice for agent runtimes through ElevenLabs Speech Engine.

The public API for plugin authors: :data:`hookimpl`, the settings base types, the runtime
contract (:mod:`voice_channel.runtime`) and the types hooks take or return
(:mod:`voice_channel.contract`). Import these from here; the other modules are the
implementation.
"""

from voice_channel.contract import ConfirmationPolicy, ConversationInfo, TokenDenied
from voice_channel.markers import hookimpl
from voice_channel.runtime import (
    ConfirmationDecision,
    ConfirmationRequest,
    ConversationContext,
    Intent,
    Notice,
    Refusal,
    Risk,
    Runtime,
    RuntimeEvent,
    RuntimeMessage,
    RuntimeSession,
    TextDelta,
    ToolActivity,
    ToolPhase,
    spotlight,
)
from voice_channel.settings import Secret, Settings, SettingsError, env_secret

__version__ = "0.1.0"

__all__ = [
    "ConfirmationDecision",
    "ConfirmationPolicy",
    "ConfirmationRequest",
    "ConversationContext",
    "ConversationInfo",
    "Intent",
    "Notice",
    "Refusal",
    "Risk",
    "Runtime",
    "RuntimeEvent",
    "RuntimeMessage",
    "RuntimeSession",
    "Secret",
    "Settings",
    "SettingsError",
    "TextDelta",
    "TokenDenied",
    "ToolActivity",
    "ToolPhase",
    "__version__",
    "env_secret",
    "hookimpl",
    "spotlight",
]
