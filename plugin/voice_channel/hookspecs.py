"""The host contract: every hook a ``voice_channel`` plugin can implement.

This is the only hook specification module. A plugin is any module or object with functions
named after these hooks and decorated with :data:`voice_channel.hookimpl`; it is found through
the ``voice_channel`` entry-point group::

    # pyproject.toml of your plugin
    [project.entry-points.voice_channel]
    my_runtime = "my_package.voice_plugin"

Conventions shared by every hook:

* Hooks are called with keyword arguments; an implementation may accept fewer arguments than
  the spec lists (specs can grow without breaking plugins).
* An implementation may be ``async def`` (or return an awaitable): the channel awaits it.
  The registration hooks (``..._register_*``) are the exception: they run at start-up and must
  be synchronous.
* A hook that raises is logged with the plugin's name; what happens next is stated per hook,
  always failing towards the safe side.
* The built-in runtimes (``echo``, ``demo``) are plugins using these same hooks.

How hooks are called. The channel asks the implementations of a hook itself, one at a time, in
pluggy's order (last registered first; ``tryfirst`` before, ``trylast`` after), and awaits an
async answer before asking the next. That is what keeps each hook's rule true whatever mix of
sync and async plugins is installed: ``firstresult`` stops at the first *awaited* answer that is
not ``None`` (pluggy's own loop would stop at the first coroutine, before it knew the answer),
the transcript hooks form a chain, every confirmation-policy answer counts, and one failing
plugin does not stop the others. So:

* ``tryfirst``, ``trylast``, ``optionalhook`` and ``specname`` work as in pluggy.
* ``wrapper=True`` and ``hookwrapper=True`` are refused: registering such a plugin raises
  :class:`pluggy.PluginValidationError` naming the plugin, the hook and the option, and nothing
  of the plugin is registered. (Around async implementations a wrapper could only ever see
  unawaited coroutines.) An ``async def`` registration hook is refused the same way.

Tracing: with ``VOICE_CHANNEL_TRACE_PLUGINS=1`` every hook call is logged at info level, a
``hook_call`` line (``hook``, ``plugins`` in call order) and a ``hook_done`` line (``hook`` and a
short ``result``, or ``error``). The arguments are never logged: they hold what the caller said
and the browser's request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from voice_channel.markers import hookspec

if TYPE_CHECKING:
    from aiohttp import web
    from pydantic import BaseModel

    from voice_channel.contract import ConfirmationPolicy, ConversationInfo, TokenDenied
    from voice_channel.runtime import ConfirmationRequest, Refusal, RuntimeMessage

# --- registration -------------------------------------------------------------------------------


@hookspec
def voice_channel_register_runtimes(register: Callable[..., None]) -> None:
    """Register runtime factories by name.

    Call ``register(name, factory, description="")`` once per runtime. ``factory(settings)``
    returns a :class:`~voice_channel.runtime.Runtime`; it should import heavy optional
    dependencies itself, so that listing plugins never needs them. The ``runtime`` setting picks
    one by name. Names must be unique across plugins.

    :param register: the registration callback.

    .. versionadded:: 0.1
    """


@hookspec
def voice_channel_register_settings(register: Callable[[str, type[BaseModel]], None]) -> None:
    """Register a settings section for this plugin.

    Call ``register(section, model)`` with a pydantic model; its fields become settable in the
    config file under ``section:`` and through ``VOICE_CHANNEL_<SECTION>__<FIELD>``, and appear
    in the generated configuration schema. Built-in section names cannot be taken.

    :param register: the registration callback.

    .. versionadded:: 0.1
    """


# --- conversation lifecycle ---------------------------------------------------------------------


@hookspec
def voice_channel_conversation_started(conversation: ConversationInfo) -> Awaitable[None] | None:
    """A verified conversation has started (after its ``init`` frame).

    ``conversation`` is a read-only :class:`~voice_channel.contract.ConversationInfo`:
    ``conversation_id``, ``runtime_name``, ``handshake_headers`` (the upgrade request's headers,
    minus the authorization and shared-secret headers), ``language``, ``record``, ``started_at``,
    ``ended_reason`` and ``awaiting_confirmation``. An exception is logged and ignored.

    :param conversation: the conversation, read-only.

    .. versionadded:: 0.1
    """


@hookspec
def voice_channel_conversation_ended(conversation: ConversationInfo, reason: str) -> Awaitable[None] | None:
    """A conversation has ended and its turns and runtime session are closed.

    :param conversation: the conversation.
    :param reason: ``"close"`` (ElevenLabs sent ``close``), ``"disconnect"`` (the socket dropped),
        ``"shutdown"`` (the server is stopping), ``"too_big"`` (a frame over the size limit),
        ``"not_reading"`` (the peer did not read what it was sent; closed with 1008) or ``"error"``
        (the socket failed).

    .. versionadded:: 0.1
    """


# --- turns --------------------------------------------------------------------------------------


@hookspec
def voice_channel_transcript(
    message: RuntimeMessage, conversation: ConversationInfo
) -> Awaitable[RuntimeMessage | Refusal | None] | RuntimeMessage | Refusal | None:
    """Observe, transform or veto an utterance *after* the trust boundary.

    Runs for every utterance that would go to the runtime (not for channel intents or answers to
    a confirmation). Implementations run in registration order (LIFO); each sees the message as
    left by the previous one.

    :param message: the sanitised, provenance-labelled utterance.
    :param conversation: the conversation.
    :returns: ``None`` to pass; a :class:`~voice_channel.runtime.Refusal` to veto (its text is
        spoken instead of calling the runtime); or a replacement ``RuntimeMessage``. A replacement
        goes through the trust boundary again and keeps the original provenance, so a plugin
        cannot launder text into a trusted message. An exception vetoes the turn with the
        apology phrase.

    .. versionadded:: 0.1
    """


@hookspec
def voice_channel_confirmation_policy(
    request: ConfirmationRequest, conversation: ConversationInfo
) -> Awaitable[ConfirmationPolicy | None] | ConfirmationPolicy | None:
    """Decide how strict the spoken confirmation of ``request`` must be.

    Every implementation is asked, and the *strictest* answer applies; it can never be below what
    the request itself asks for (``risk="high"`` means a code word). So a plugin can only raise
    the bar: to a code word, or to :attr:`~voice_channel.contract.ConfirmationPolicy.NEVER`
    (never approvable by voice). An exception counts as ``NEVER``.

    This deliberately differs from a ``firstresult`` hook: with first-result semantics a lenient
    plugin registered late would silence a stricter one.

    :param request: what the runtime wants to do.
    :param conversation: the conversation.
    :returns: a :class:`~voice_channel.contract.ConfirmationPolicy`, or ``None`` to abstain.

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def voice_channel_progress_phrase(
    kind: str, tool: str, count: int, elapsed_s: float, conversation: ConversationInfo
) -> Awaitable[str | None] | str | None:
    """Choose what the caller hears while the runtime runs a tool.

    Asked each time the channel is about to say a progress phrase (see the ``progress`` settings:
    when, how often, and never over text still playing or after an interruption). Stops at the first
    implementation that answers something other than ``None``.

    Example: name the tool, and stay quiet about the fast ones::

        @hookimpl
        def voice_channel_progress_phrase(kind, tool, count):
            if tool == "web_search":
                return "Searching the web." if kind == "start" else "Still searching."
            return None

    :param kind: ``"start"`` (once per turn, when a tool has been running ``progress.delay_s``) or
        ``"progress"`` (every ``progress.interval_s`` while it keeps running).
    :param tool: the name of the tool the runtime reported (may be empty).
    :param count: ``0`` for the start phrase; for a progress line, its number in this turn (from 1).
    :param elapsed_s: seconds since the tool started.
    :param conversation: the conversation, read-only.
    :returns: the words to say; ``""`` to say nothing this time; ``None`` to leave it to the next
        implementation and then the built-in phrases (``progress.start_phrases`` and
        ``progress.progress_phrases``, varied). Anything else, or an exception, is logged and the
        built-in phrase is said.

    .. versionadded:: 0.1
    """


# --- browser side -------------------------------------------------------------------------------


@hookspec(firstresult=True)
def voice_channel_authorize_token(
    request: web.Request,
) -> Awaitable[bool | TokenDenied | None] | bool | TokenDenied | None:
    """Decide whether this browser request may get a conversation token (``GET /api/token``).

    Stops at the first non-``None`` result. The built-in policy (plugin ``token_policy``, registered
    ``trylast`` so that any plugin decides first) allows requests from the configured origins (by default this
    server's own), plus a bearer secret when one is configured, and anonymous access only when
    ``token.allow_anonymous`` is set. The per-client rate limit applies before this hook, whatever it answers.
    An exception denies the request (and is logged with the plugin's name).

    Example: allow the users of the host application's session middleware::

        @hookimpl
        def voice_channel_authorize_token(request):
            return True if request.get("user") else None

    :param request: the aiohttp request (``request.config_dict`` holds the channel's state).
    :returns: ``True`` to allow; ``False`` to deny (HTTP 403, "not allowed"); a
        :class:`~voice_channel.contract.TokenDenied` to deny with your own status, code and plain-words message for
        the page; ``None`` to let the next implementation decide.

    .. versionadded:: 0.1
    """


HOOK_NAMES: tuple[str, ...] = tuple(name for name in dir() if name.startswith("voice_channel_"))
