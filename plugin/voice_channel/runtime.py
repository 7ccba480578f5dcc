"""The runtime contract: what a runtime receives, what it may emit, and how it is driven.

A *runtime* is the agent behind the voice (Hermes Agent, OpenClaw, an OpenAI-compatible
server, or the built-in ``echo``/``demo``). The channel talks to it only through these types:

* :class:`RuntimeMessage` is the one thing a runtime ever receives: a sanitised utterance,
  labelled ``source="voice"`` and ``trust="untrusted"``, built by :mod:`voice_channel.channel.untrusted`.
* :meth:`RuntimeSession.respond` returns an async iterator of :data:`RuntimeEvent`
  (``TextDelta``, ``ConfirmationRequest``, ``Notice``, ``ToolActivity``); a plain ``str`` and the
  stream chunks of the OpenAI, Anthropic and Gemini SDKs are accepted as text too.
* Cancelling the task that iterates ``respond`` must cancel the runtime's run (close the HTTP
  stream, abort the gateway run, interrupt the agent): the channel does it on every interruption
  and waits for the iterator to finish closing.
* :meth:`RuntimeSession.resolve` answers a :class:`ConfirmationRequest` the runtime emitted.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from voice_channel.channel.record import ConversationRecord
    from voice_channel.settings import Settings

__all__ = [
    "ConfirmationDecision",
    "ConfirmationRequest",
    "ConversationContext",
    "Intent",
    "Notice",
    "Refusal",
    "Risk",
    "Runtime",
    "RuntimeEvent",
    "RuntimeFactory",
    "RuntimeMessage",
    "RuntimeSession",
    "TextDelta",
    "ToolActivity",
    "ToolPhase",
    "spotlight",
]

Risk = Literal["normal", "high"]


class Intent(enum.StrEnum):
    """Channel commands recognised deterministically before any runtime sees the text."""

    STOP = "stop"
    CANCEL = "cancel"
    REPEAT = "repeat"
    CONFIRM = "confirm"
    DENY = "deny"


@dataclass(frozen=True, slots=True)
class RuntimeMessage:
    """One caller utterance, after the trust boundary.

    ``text`` is the sanitised words of the caller. It is *data*, never instructions: runtimes that
    build a text prompt should use :attr:`prompt`, which wraps the words in a spotlighting boundary
    carrying a per-conversation random ``boundary`` marker that the caller cannot forge (the marker
    is stripped from any input).
    """

    text: str
    conversation_id: str
    event_id: int | None
    boundary: str
    intent: Intent | None = None
    #: What the trust boundary changed, e.g. ``{"truncated", "invisible_stripped"}``.
    flags: frozenset[str] = frozenset()
    source: Literal["voice"] = "voice"
    trust: Literal["untrusted"] = "untrusted"

    @property
    def prompt(self) -> str:
        """The text wrapped in the conversation's spotlighting boundary, for text-prompt runtimes."""
        return spotlight(self.text, self.boundary)


def spotlight(text: str, boundary: str) -> str:
    """Caller text wrapped in the conversation's boundary markers: the one place that knows their form.

    For runtimes that build text prompts (e.g. a history of earlier utterances); a ``RuntimeMessage``
    offers the same as :attr:`RuntimeMessage.prompt`.
    """
    return f"<<caller-speech {boundary}>>\n{text}\n<<end-caller-speech {boundary}>>"


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the reply to be spoken. Deltas are concatenated; markdown is shaped away."""

    text: str


@dataclass(frozen=True, slots=True)
class Notice:
    """Something the runtime wants logged but never spoken (tool progress, busy acks...)."""

    text: str
    kind: str = "notice"


class ToolPhase(enum.StrEnum):
    """Where a tool call is: :attr:`START` when the runtime begins running it, :attr:`END` when it is done."""

    START = "start"
    END = "end"


@dataclass(frozen=True, slots=True)
class ToolActivity:
    """The runtime started or finished running a tool; never spoken itself.

    While a tool runs the caller would hear nothing, so the channel says a short phrase ("Let me
    check that.") and, for a long tool, a progress line now and then (see ``progress`` settings and
    the ``voice_channel_progress_phrase`` hook). ``call_id`` pairs an ``END`` with its ``START``
    when several tools overlap; without one, the tool name does. An ``END`` that matches no
    ``START`` is ignored, and the turn ending ends all of them.
    """

    phase: ToolPhase
    #: The tool's name as the runtime knows it, e.g. ``terminal`` or ``exec`` (may be empty).
    tool: str = ""
    call_id: str | None = None


@dataclass(frozen=True, slots=True)
class ConfirmationRequest:
    """A runtime asks the caller to approve an action before it runs.

    The channel speaks a prompt built from ``action``/``summary`` (never from free model text),
    ends the turn and routes the caller's next utterance to a deterministic answer parser. The
    decision comes back through :meth:`RuntimeSession.resolve`; the runtime's iterator is then
    resumed in the turn of the utterance that answered it.

    ``risk="high"`` requires a one-time code word; a policy hook can raise the strictness further.
    """

    id: str
    action: str
    summary: str = ""
    risk: Risk = "normal"


@dataclass(frozen=True, slots=True)
class ConfirmationDecision:
    """The channel's answer to a :class:`ConfirmationRequest`.

    ``reason`` says how it was reached: ``"user"`` (the caller answered), ``"timeout"``,
    ``"doubt"`` (no clear answer after a re-ask), ``"superseded"`` (interruption or a newer
    request), ``"policy"`` (never allowed by voice) or ``"closed"`` (the conversation ended).
    Only ``reason == "user"`` can carry ``approved=True``.
    """

    approved: bool
    reason: Literal["user", "timeout", "doubt", "superseded", "policy", "closed"]

    def __post_init__(self) -> None:
        if self.approved and self.reason != "user":
            raise ValueError("only the caller's answer can approve a request")


RuntimeEvent = TextDelta | Notice | ConfirmationRequest | ToolActivity


@dataclass(slots=True)
class ConversationContext:
    """What a runtime session may know about its conversation."""

    conversation_id: str
    settings: Settings
    #: The channel's own record of what the runtime received and what the caller heard.
    record: ConversationRecord
    #: Per-conversation random marker used by :attr:`RuntimeMessage.prompt`.
    boundary: str
    #: The conversation's language (``confirmations.language``, or the engine's language header), ISO 639-1.
    language: str = "en"
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class RuntimeSession(Protocol):
    """One conversation's view of a runtime."""

    def respond(self, message: RuntimeMessage) -> AsyncIterator[RuntimeEvent | str | Any]:
        """Stream the reply to ``message``.

        Cancelling the consuming task must stop the runtime's run; the iterator is closed with
        ``aclose()`` afterwards. Raising an exception ends the turn with a short spoken apology.
        """
        ...

    async def resolve(self, request_id: str, decision: ConfirmationDecision) -> None:
        """Deliver the channel's decision on a :class:`ConfirmationRequest` this session emitted."""
        ...

    async def aclose(self) -> None:
        """Release the session; called once when the conversation ends."""
        ...


@runtime_checkable
class Runtime(Protocol):
    """A runtime, shared by all conversations of one server."""

    name: str

    async def start(self) -> None:
        """Acquire shared resources (HTTP clients, gateway connections) before serving."""
        ...

    async def open_session(self, context: ConversationContext) -> RuntimeSession:
        """Create the session of one conversation."""
        ...

    async def aclose(self) -> None:
        """Release shared resources at shutdown."""
        ...

    # Optional: ``def readiness(self) -> str | None``. ``None`` when the runtime can take a turn now,
    # otherwise a short reason ("gateway starting"). Called, synchronously, by ``/readyz`` and before
    # every WebSocket upgrade (503 while not ready); a runtime without it is ready once started.
    # Not a Protocol member, so that runtimes written before it still satisfy ``isinstance``.


#: Builds a runtime from the loaded settings. Registered through ``voice_channel_register_runtimes``.
RuntimeFactory = Callable[["Settings"], Runtime]


@dataclass(frozen=True, slots=True)
class Refusal:
    """Returned by a ``voice_channel_transcript`` hook to veto a turn; ``text`` is spoken instead."""

    text: str
