"""The ElevenLabs Speech Engine wire format: the only module that knows it.

PROTOCOL_NOTES
==============
* ElevenLabs is the WebSocket *client*: one connection per conversation to the engine's
  ``speech_engine.ws_url``. The handshake carries ``X-Elevenlabs-Speech-Engine-Authorization``
  (HS256 JWT, secret = SHA-256 digest of the API key, exact ``iss``/``sub``, 60 s leeway) and every
  header configured in ``speech_engine.request_headers``. No sub-protocol; JSON text frames
  (binary frames are decoded as UTF-8 JSON too).
* In: ``init {conversation_id}`` (once, first), ``user_transcript {event_id, user_transcript:
  [{role: user|agent, content}]}`` (the *full* history each time), ``ping``, ``close``,
  ``error {message}``. Unknown types are ignored for forward compatibility.
* Out: ``agent_response {content, event_id, is_final}`` chunks, closed by one frame with empty
  ``content`` and ``is_final: true``; ``pong`` (no ``event_id``). All four ``agent_response``
  fields are always sent, except ``event_id`` when the transcript had none.
* ``event_id`` is monotonic: a *higher* id supersedes the reply in flight (ElevenLabs discards
  chunks tagged with an older id); the *same* id again is a re-send after the cascade timeout
  (2–15 s without text), not a barge-in; a lower id is stale.
* ``event_id`` bounds: an integer in ``0 ..`` :data:`MAX_EVENT_ID` (2**53 - 1, the largest integer
  every JSON reader, JavaScript's included, represents exactly: what ElevenLabs can send). Anything
  else is a malformed frame: refused with a logged error, the conversation goes on. A jump *ahead*
  by more than :data:`MAX_EVENT_ID_JUMP` (2**32) from the current turn's id is refused the same
  way (``event_id_implausible_jump``): no counter, and no millisecond clock within a conversation,
  moves that far, and accepting it would make every later genuine id look stale. Smaller gaps are
  normal (ElevenLabs may skip ids) and supersede as usual. The first id of a conversation has no
  reference and is taken as it comes.
* There is no server-initiated message: the server only ever speaks in reply to a transcript.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, TypeAdapter, ValidationError
from pydantic_core import to_json

__all__ = [
    "AGENT_ROLES",
    "MAX_EVENT_ID",
    "MAX_EVENT_ID_JUMP",
    "USER_ROLE",
    "CloseMessage",
    "ErrorMessage",
    "EventIdOutOfRange",
    "InboundMessage",
    "InitMessage",
    "PingMessage",
    "ProtocolError",
    "UnknownMessage",
    "UserTranscriptMessage",
    "encode_agent_response",
    "encode_pong",
    "is_history_item",
    "parse_frame",
]

USER_ROLE = "user"
AGENT_ROLES = frozenset({"agent"})
#: The largest ``event_id`` accepted: 2**53 - 1, JSON's (and JavaScript's) largest exact integer.
MAX_EVENT_ID = 2**53 - 1
#: The largest step ahead of the current turn's ``event_id`` that is believed (see PROTOCOL_NOTES).
MAX_EVENT_ID_JUMP = 2**32


class _Inbound(BaseModel):
    # Unknown fields are ignored: ElevenLabs may add some at any time.
    model_config = ConfigDict(extra="ignore", frozen=True)


class InitMessage(_Inbound):
    type: Literal["init"]
    conversation_id: StrictStr = Field(min_length=1, max_length=256)


class UserTranscriptMessage(_Inbound):
    type: Literal["user_transcript"]
    #: Optional in the current spec; without it every transcript is a new turn.
    event_id: Annotated[StrictInt, Field(ge=0, le=MAX_EVENT_ID)] | None = None
    #: Items are validated one by one (:func:`parse_history_item`) so that one bad item is
    #: skipped instead of dropping the whole turn.
    user_transcript: list[Any] = Field(default_factory=list)


class PingMessage(_Inbound):
    type: Literal["ping"]


class CloseMessage(_Inbound):
    type: Literal["close"]


class ErrorMessage(_Inbound):
    type: Literal["error"]
    message: str = ""


class UnknownMessage(BaseModel):
    """A well-formed frame of a type this version does not know; ignored."""

    type: str


InboundMessage = InitMessage | UserTranscriptMessage | PingMessage | CloseMessage | ErrorMessage

_INBOUND: TypeAdapter[InboundMessage] = TypeAdapter(Annotated[InboundMessage, Field(discriminator="type")])


class ProtocolError(ValueError):
    """A frame that is not valid JSON or does not match the protocol's schema."""


class EventIdOutOfRange(ProtocolError):
    """A ``user_transcript`` whose ``event_id`` is outside ``0 ..`` :data:`MAX_EVENT_ID`."""


def parse_frame(data: str | bytes) -> InboundMessage | UnknownMessage:
    """Parse one inbound text or binary frame.

    :raises ProtocolError: not JSON, not an object, or a known type with wrong fields.
    """
    try:
        return _INBOUND.validate_json(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        if errors and errors[0]["type"] == "union_tag_invalid":
            kind = json.loads(data)["type"]
            if isinstance(kind, str):
                return UnknownMessage(type=kind)
        if errors and errors[0]["loc"][-1:] == ("event_id",) and errors[0]["type"] in _OUT_OF_RANGE:
            raise EventIdOutOfRange(f"event_id: out of range, must be 0 .. {MAX_EVENT_ID} (2**53 - 1)") from None
        raise ProtocolError(_describe(errors)) from None


_OUT_OF_RANGE = frozenset({"less_than_equal", "greater_than_equal"})


def _describe(errors: list[Any]) -> str:
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"]) or "frame"
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first['msg']}{more}"


def is_history_item(item: Any) -> bool:
    """Whether one ``user_transcript`` item is usable: role ``user``/``agent``, string content.

    Other keys are ignored. Checked by hand and without building anything: histories are re-sent
    in full every turn, so this runs for every item of every transcript.
    """
    return (
        type(item) is dict
        and type(item.get("content")) is str
        and (item.get("role") == "user" or item.get("role") == "agent")
    )


def encode_agent_response(content: str, event_id: int | None, is_final: bool) -> str:
    """Serialise an ``agent_response`` frame. ``event_id`` is omitted when the turn had none."""
    if event_id is None:
        frame: dict[str, Any] = {"type": "agent_response", "content": content, "is_final": is_final}
    else:
        frame = {"type": "agent_response", "content": content, "event_id": event_id, "is_final": is_final}
    return to_json(frame).decode()


_PONG = to_json({"type": "pong"}).decode()


def encode_pong() -> str:
    """Serialise the reply to an upstream ``ping``."""
    return _PONG
