"""The Hermes platform adapter: the voice channel served from inside Hermes's gateway.

``connect`` loads the channel's settings (``platforms.elevenlabs_voice.extra`` and the
environment), builds the channel's aiohttp application with the ``hermes`` runtime bound to this
adapter, and serves it on ``server.host:server.port`` + ``server.path`` in the gateway's own event
loop; ``disconnect`` shuts it down gracefully (open conversations closed with 1001, their Hermes
runs stopped by the gateway's own shutdown).

Each conversation is one Hermes chat (``chat_id`` = the conversation id, ``chat_type`` ``dm``),
managed by a :class:`~voice_channel_hermes.chat.VoiceChat`; this class implements its
:class:`~voice_channel_hermes.chat.HermesPort` and routes every delivery call Hermes makes
(``send``, ``send_draft``, ``edit_message``, ``send_exec_approval``, the processing hooks) to the
chat it names. Imports Hermes: only loaded by Hermes's plugin loader.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from typing import Any

import structlog
from gateway.config import Platform, PlatformConfig
from gateway.platforms.base import (
    BasePlatformAdapter,
    MessageEvent,
    MessageType,
    ProcessingOutcome,
    SendResult,
)
from gateway.session import build_session_key

from voice_channel import ConversationContext, Settings, SettingsError, ToolActivity
from voice_channel.app import create_app
from voice_channel.channel.auth import protection
from voice_channel.logging import LineRedactor, SecretRedactor
from voice_channel.plugins import PluginHooks, get_plugin_manager
from voice_channel.serving.server import running_app
from voice_channel.settings import secret_values
from voice_channel_hermes import PLATFORM
from voice_channel_hermes.chat import VoiceChat
from voice_channel_hermes.policy import ToolPolicy
from voice_channel_hermes.prewarm import prewarm_agent
from voice_channel_hermes.runs import RunTracker
from voice_channel_hermes.runtime import AdapterRuntimePlugin
from voice_channel_hermes.settings import channel_settings
from voice_channel_hermes.tools import ToolEvents
from voice_channel_hermes.transcript import amend_last_reply

__all__ = ["ElevenLabsVoiceAdapter"]

logger = logging.getLogger(__name__)

#: Said to Hermes when its clarify tool asks a multiple-choice question: a call has no buttons.
CLARIFY_BY_VOICE = (
    "The caller is on a voice call and cannot pick from a list. Ask your question in your spoken reply, "
    "in plain words, and wait for the caller's answer."
)


class ElevenLabsVoiceAdapter(BasePlatformAdapter):
    """Platform ``elevenlabs_voice`` (see the module docstring)."""

    #: Hermes streams only to adapters that can edit; drafts are what we actually get.
    SUPPORTS_MESSAGE_EDITING = True
    #: Never split a reply into several messages: it would break the draft/final bookkeeping.
    MAX_MESSAGE_LENGTH = 1_000_000
    #: Nothing can be delivered after a turn ended: a call has no inbox (tools then say so).
    supports_async_delivery = False
    #: A voice caller is there to answer a resumed session.
    interactive_resume = True

    def __init__(
        self,
        config: PlatformConfig,
        policy: ToolPolicy | None = None,
        runs: RunTracker | None = None,
        tools: ToolEvents | None = None,
    ) -> None:
        super().__init__(config, Platform(PLATFORM))
        self._policy = policy or ToolPolicy()
        #: Hermes agent runs in flight, from the plugin's run hooks (see :mod:`voice_channel_hermes.runs`).
        self._runs = runs or RunTracker()
        #: The calls' tool runs, from the plugin's tool hooks (see :mod:`voice_channel_hermes.tools`).
        self._tools = tools or ToolEvents()
        self._settings: Settings | None = None
        self._chats: dict[str, VoiceChat] = {}
        self._serving: contextlib.AsyncExitStack | None = None
        self._closing = False
        self._out_ids = itertools.count(1)
        #: The port the channel listens on once connected (``server.port: 0`` picks one).
        self.port: int | None = None
        #: Building a throwaway agent at platform start (see :mod:`voice_channel_hermes.prewarm`).
        self._prewarm: asyncio.Future[None] | None = None

    # --- lifecycle ---------------------------------------------------------------------------------

    async def connect(self, *, is_reconnect: bool = False) -> bool:
        try:
            pm = get_plugin_manager(
                blocked=("hermes",), extra_plugins=(AdapterRuntimePlugin(self.open_chat, self.readiness),)
            )
            settings = channel_settings(self.config.extra, PluginHooks(pm))
            app = create_app(settings, pm)
        except (SettingsError, ValueError) as exc:
            logger.error("[%s] %s", self.name, exc)
            self._set_fatal_error("config_invalid", str(exc), retryable=False)
            return False
        _configure_logging(settings)
        self._policy.configure(settings.hermes.confirm_tools)
        if settings.auth.insecure_no_auth:
            logger.warning(
                "[%s] JWT verification is OFF (auth.insecure_no_auth); protected by: %s. Anyone who can reach"
                " %s:%s%s can talk to this Hermes. Voice callers then need ELEVENLABS_VOICE_ALLOWED_USERS.",
                self.name,
                protection(settings),
                settings.server.host,
                settings.server.port,
                " and has the shared secret" if settings.auth.header_secret is not None else "",
            )
        serving = contextlib.AsyncExitStack()
        try:
            self.port = await serving.enter_async_context(running_app(app, settings))
        except OSError as exc:
            message = f"{PLATFORM}: cannot listen on {settings.server.host}:{settings.server.port}: {exc}"
            logger.error("[%s] %s", self.name, message)
            self._set_fatal_error("listen_failed", message, retryable=True)
            return False
        self._settings, self._serving, self._closing = settings, serving, False
        self._tools.attach(asyncio.get_running_loop(), self._on_tool)
        if settings.hermes.prewarm and self._prewarm is None:
            self._prewarm = asyncio.ensure_future(self._prewarm_agent())
        self._mark_connected()
        logger.info(
            "[%s] voice channel listening on ws://%s:%s%s",
            self.name,
            settings.server.host,
            self.port,
            settings.server.path,
        )
        return True

    def readiness(self) -> str | None:
        """Why a call would not be answered now, or None (the channel's ``/readyz`` and upgrade check).

        Until Hermes's gateway has finished starting, it queues inbound messages and answers them
        only later (``GatewayRunner._startup_restore_in_progress``), so a call would hear nothing;
        and until the pre-warm is done, the first call would wait for it.
        """
        runner = getattr(self, "gateway_runner", None)
        if runner is None or not getattr(runner, "_running", False):
            return "hermes gateway starting"
        if getattr(runner, "_startup_restore_in_progress", False):
            return "hermes gateway starting"
        if self._prewarm is not None and not self._prewarm.done():
            return "hermes agent warming up"
        return None

    async def wait_ready(self) -> None:
        """Wait until the pre-warm is done (the gateway's own start is awaited by whoever started it)."""
        if self._prewarm is not None:
            await asyncio.shield(self._prewarm)

    async def _prewarm_agent(self) -> None:
        seconds = await asyncio.to_thread(prewarm_agent)
        logger.info("[%s] Hermes agent pre-warmed in %.1fs", self.name, seconds)

    async def disconnect(self) -> None:
        self._closing = True
        self._tools.detach()
        serving, self._serving = self._serving, None
        if serving is not None:
            await serving.aclose()
        prewarm, self._prewarm = self._prewarm, None
        if prewarm is not None:
            # A thread cannot be cancelled: let it finish (it does on its own) rather than orphan it.
            await asyncio.wait({prewarm}, timeout=60)
        self._chats.clear()
        self._mark_disconnected()

    async def get_chat_info(self, chat_id: str) -> dict[str, Any]:
        return {"name": f"Voice call {chat_id}", "type": "dm", "chat_id": chat_id}

    @property
    def authorization_is_upstream(self) -> bool:
        """Voice callers are authorized upstream when ElevenLabs' JWT is verified (see the README)."""
        settings = self._settings
        return settings is not None and settings.hermes.trust_voice_callers and not settings.auth.insecure_no_auth

    # --- conversations ---------------------------------------------------------------------------------

    def open_chat(self, context: ConversationContext) -> VoiceChat:
        """The ``hermes`` runtime's session for a new conversation: a new Hermes chat."""
        settings = self._settings
        assert settings is not None, "the channel runs only while connected"
        chat_id = context.conversation_id
        for suffix in itertools.count(2):
            if chat_id not in self._chats:
                break
            chat_id = f"{context.conversation_id}~{suffix}"
        source = self.build_source(
            chat_id=chat_id,
            chat_name=f"Voice call {context.conversation_id}",
            chat_type="dm",
            user_id=settings.hermes.user_id,
            user_name=settings.hermes.user_name,
        )
        session_key = build_session_key(
            source,
            group_sessions_per_user=self.config.extra.get("group_sessions_per_user", True),
            thread_sessions_per_user=self.config.extra.get("thread_sessions_per_user", False),
        )
        chat = VoiceChat(
            self,
            context,
            chat_id=chat_id,
            session_key=session_key,
            source=source,
            stop_timeout_s=settings.hermes.stop_timeout_s,
        )
        self._chats[chat_id] = chat
        return chat

    # --- HermesPort ---------------------------------------------------------------------------------------

    @property
    def cursor(self) -> str:
        streaming = getattr(getattr(getattr(self, "gateway_runner", None), "config", None), "streaming", None)
        return str(getattr(streaming, "cursor", "") or "")

    async def submit(self, chat: VoiceChat, text: str, message_id: str) -> None:
        await self.handle_message(
            MessageEvent(text=text, message_type=MessageType.TEXT, source=chat.source, message_id=message_id)
        )

    async def stop(self, chat: VoiceChat, timeout: float) -> None:
        """Hermes's hard cancel: ``/stop`` interrupts the agent (its LLM stream is closed), drops what
        the run would still deliver, and cancels the processing task. Skipped while the gateway
        shuts down (it stops every run itself)."""
        if self._closing or not self._busy(chat.session_key):
            return
        stop_id = f"{chat.chat_id}:stop:{next(self._out_ids)}"
        await self.handle_message(
            MessageEvent(text="/stop", message_type=MessageType.TEXT, source=chat.source, message_id=stop_id)
        )
        if not await self.wait_idle(chat, timeout):
            chat.log.warning("hermes_stop_slow", timeout_s=timeout)

    async def wait_idle(self, chat: VoiceChat, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._busy(chat.session_key):
            task = self._session_tasks.get(chat.session_key)
            remaining = deadline - loop.time()
            if task is None or task.done() or remaining <= 0:
                break
            # Wait on Hermes's processing task itself (not a poll); a follow-up task may take over.
            await asyncio.wait({task}, timeout=remaining)
        if self._busy(chat.session_key):
            return False
        # A /stop frees the session before the agent's thread has persisted the interrupted turn;
        # a message submitted then would be built on a transcript without it.
        if await self._runs.wait_finished(chat.session_key, max(deadline - loop.time(), 0.0)):
            return True
        chat.log.warning("hermes_run_not_finished", timeout_s=timeout)
        self._runs.forget(chat.session_key)
        return False

    async def amend_reply(self, chat: VoiceChat, heard_words: int) -> None:
        store = getattr(getattr(self, "gateway_runner", None), "session_store", None)
        if store is None:
            return
        started = time.perf_counter()
        removed = await asyncio.to_thread(amend_last_reply, store, chat.session_key, heard_words)
        if removed is not None:
            chat.log.info(
                "hermes_reply_cut_to_heard",
                heard_words=heard_words,
                removed_words=removed,
                took_ms=round((time.perf_counter() - started) * 1000, 1),
            )

    def resolve_approval(self, session_key: str, choice: str) -> int:
        from tools.approval import resolve_gateway_approval

        return resolve_gateway_approval(session_key, choice)

    def forget(self, chat: VoiceChat) -> None:
        if self._chats.get(chat.chat_id) is chat:
            del self._chats[chat.chat_id]

    def _on_tool(self, session_key: str, activity: ToolActivity) -> None:
        """A tool of a voice session started or ended (from :class:`ToolEvents`, on this loop)."""
        for chat in self._chats.values():
            if chat.session_key == session_key:
                chat.on_tool(activity)
                return

    def _busy(self, session_key: str) -> bool:
        return session_key in self._active_sessions

    # --- what Hermes delivers ---------------------------------------------------------------------------

    def supports_draft_streaming(self, chat_type: str | None = None, metadata: dict[str, Any] | None = None) -> bool:
        return True

    async def send_draft(
        self, chat_id: str, draft_id: int, content: str, metadata: dict[str, Any] | None = None
    ) -> SendResult:
        chat = self._chats.get(str(chat_id))
        if chat is not None:
            chat.on_draft(draft_id, content)
        return SendResult(success=True)

    async def send(
        self, chat_id: str, content: str, reply_to: str | None = None, metadata: dict[str, Any] | None = None
    ) -> SendResult:
        message_id = f"vc-{next(self._out_ids)}"
        chat = self._chats.get(str(chat_id))
        if chat is not None:
            chat.on_send(content, reply_to, metadata, message_id, failed=self._runs.failed(chat.session_key))
        else:
            logger.debug("[%s] dropped a message for chat %s (no open call)", self.name, chat_id)
        return SendResult(success=True, message_id=message_id)

    async def edit_message(
        self, chat_id: str, message_id: str, content: str, *, finalize: bool = False, **_: Any
    ) -> SendResult:
        chat = self._chats.get(str(chat_id))
        if chat is not None:
            chat.on_edit(message_id, content, finalize)
        return SendResult(success=True, message_id=message_id)

    async def send_typing(self, chat_id: str, metadata: dict[str, Any] | None = None) -> None:
        """A call has no typing indicator (the channel's filler phrase covers slow starts)."""

    async def on_processing_start(self, event: MessageEvent) -> None:
        chat = self._chats.get(str(event.source.chat_id)) if event.source else None
        if chat is not None:
            chat.on_processing(event.message_id, None)

    async def on_processing_complete(self, event: MessageEvent, outcome: ProcessingOutcome) -> None:
        chat = self._chats.get(str(event.source.chat_id)) if event.source else None
        if chat is not None:
            if outcome is not ProcessingOutcome.CANCELLED:
                # Hermes awaited the agent's thread to its end (only a /stop does not): its run is over,
                # even one that never said so (a failed run returns before the on_session_end hook).
                self._runs.forget(chat.session_key)
            chat.on_processing(event.message_id, outcome.value)

    async def send_exec_approval(
        self,
        chat_id: str,
        command: str,
        session_key: str,
        description: str = "dangerous command",
        metadata: dict[str, Any] | None = None,
        allow_permanent: bool = True,
        smart_denied: bool = False,
    ) -> SendResult:
        """Hermes's approval gate: the caller is asked by voice; "always" is never offered. What Hermes
        flags as dangerous needs the confirmation's code word (:func:`~voice_channel_hermes.prompting.hermes_risk`).

        Returns at once (Hermes waits at most 15 s for this call); the decision comes later through
        :meth:`VoiceChat.resolve`. With no open reply to ask in, the request is denied right away
        rather than left to Hermes's timeout."""
        chat = self._chats.get(str(chat_id))
        if (
            chat is None
            or chat.session_key != session_key
            or not chat.on_approval(command, description, session_key, smart_denied=smart_denied)
        ):
            logger.warning("[%s] approval for %s with no open call: denied", self.name, chat_id)
            self.resolve_approval(session_key, "deny")
        return SendResult(success=True)

    async def send_clarify(
        self,
        chat_id: str,
        question: str,
        choices: list[Any] | None,
        clarify_id: str,
        session_key: str,
        metadata: dict[str, Any] | None = None,
    ) -> SendResult:
        """Hermes's clarify tool waits for a pick; by voice the model asks in its reply instead."""
        from tools.clarify_gateway import resolve_gateway_clarify

        resolve_gateway_clarify(clarify_id, CLARIFY_BY_VOICE)
        return SendResult(success=True)


def _configure_logging(settings: Settings, *, cache: bool = True) -> None:
    """Route the channel's structlog output into Hermes's logging, unless the host configured it."""
    if structlog.is_configured():
        return
    secrets = secret_values(settings)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            SecretRedactor(secrets),
            structlog.processors.format_exc_info,  # plain traceback, no locals
            structlog.processors.KeyValueRenderer(key_order=["event", "conversation_id", "event_id"], sort_keys=True),
            LineRedactor(secrets),  # after rendering: exception messages and tracebacks too
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(settings.log_level.upper())),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=cache,
    )
