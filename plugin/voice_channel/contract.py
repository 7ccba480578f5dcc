"""The types hooks take or return, apart from the runtime contract (:mod:`voice_channel.runtime`).

A plugin sees a conversation through :class:`ConversationInfo` (read-only), answers
``voice_channel_confirmation_policy`` with a :class:`ConfirmationPolicy` and
``voice_channel_authorize_token`` with ``True``, ``None`` or a :class:`TokenDenied`. This module
imports no implementation module, so the contract stands on its own.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from voice_channel.channel.record import ConversationRecord
    from voice_channel.runtime import ConfirmationRequest

__all__ = ["LANGUAGE_CODES", "ConfirmationPolicy", "ConversationInfo", "TokenDenied", "normalize_language"]

#: The languages spoken confirmations and intents understand (``ConversationInfo.language`` is one of them);
#: their words are in :mod:`voice_channel.channel.languages`, English first.
LANGUAGE_CODES: tuple[str, ...] = ("en", "es", "de", "fr", "pt")
_LANGUAGE_TAG = re.compile(r"^([A-Za-z]{2,3})(?:[-_][A-Za-z0-9]{1,8})*$")


def normalize_language(tag: str) -> str | None:
    """The supported code for a BCP 47-ish tag (``pt-BR`` → ``pt``, ``es_MX`` → ``es``), or ``None``."""
    match = _LANGUAGE_TAG.match(tag.strip())
    if match is None:
        return None
    code = match.group(1).lower()
    return code if code in LANGUAGE_CODES else None


class ConfirmationPolicy(enum.IntEnum):
    """How strict a spoken confirmation must be; higher is stricter."""

    PLAIN = 1  #: "yes" or "no"
    CODE_WORD = 2  #: the request's one-time code word
    NEVER = 3  #: never approvable by voice


@runtime_checkable
class ConversationInfo(Protocol):
    """What a hook may read of a conversation (one per Speech Engine WebSocket). Read-only."""

    @property
    def conversation_id(self) -> str | None:
        """ElevenLabs' id from ``conversation_init`` (``local-…`` if a transcript came first)."""

    @property
    def runtime_name(self) -> str:
        """The runtime answering this conversation, e.g. ``echo`` or ``hermes``."""

    @property
    def handshake_headers(self) -> Mapping[str, str]:
        """The upgrade request's headers, without authorization or shared-secret headers."""

    @property
    def language(self) -> str:
        """The language confirmations and intents are understood in (``en``, ``es``, ``de``, ``fr``, ``pt``):
        the ``confirmations.language_header`` the engine sent, else ``confirmations.language``."""

    @property
    def record(self) -> ConversationRecord:
        """What the caller said and heard so far."""

    @property
    def started_at(self) -> float:
        """When the WebSocket was accepted (``time.time()``)."""

    @property
    def ended_reason(self) -> str | None:
        """Why it ended (``None`` while open)."""

    @property
    def awaiting_confirmation(self) -> ConfirmationRequest | None:
        """The request the caller's next utterance will answer, if any."""


@dataclass(frozen=True, slots=True)
class TokenDenied:
    """A refusal of ``voice_channel_authorize_token``, with what the page shows.

    :param message: plain words for the person at the page (shown as is).
    :param code: machine-readable, e.g. ``access_code_required`` (the page then asks for an access code).
    :param status: HTTP status, 4xx: 401 when a credential would help, 403 otherwise.
    :param reason: for the server log only, never sent.
    """

    message: str = "This page is not allowed to start a conversation."
    code: str = "forbidden"
    status: int = 403
    reason: str = ""

    def __post_init__(self) -> None:
        if not 400 <= self.status < 500:
            raise ValueError(f"TokenDenied.status must be a 4xx status, got {self.status}")
