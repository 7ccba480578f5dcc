"""The ``openclaw`` runtime: turns as Gateway runs, interruptions as aborts, approvals as confirmations.

One :class:`~voice_channel_openclaw.client.GatewayClient` (one device, one connection) serves
every conversation. Gateway events are routed here, by run id, to the run they belong to:
``agent`` and ``chat`` events of *every* run reach every operator connection, so anything that
is not one of our live runs is dropped.

A turn (:meth:`OpenClawSession.respond`):

1. register the run (id = the ``idempotencyKey`` = the ``runId``) *before* ``chat.send``, so no
   event of it can be missed;
2. ``chat.send`` with ``deliver: false`` to ``agent:<agentId>:elevenlabs:<conversation id>``;
3. speak the run's ``agent``/``assistant`` deltas (its ``tool`` stream, ``start`` and ``result``,
   becomes :class:`~voice_channel.runtime.ToolActivity` for the channel's progress speech); ``chat``
   ``status`` events are progress, not the end; the ``chat`` ``final`` is authoritative (text it
   has beyond what streamed is spoken; ``aborted`` and ``error`` end the turn);
4. an exec or plugin approval of the run becomes a :class:`ConfirmationRequest`; the channel asks
   the caller and calls :meth:`OpenClawSession.resolve`, which sends ``allow-once`` or ``deny``
   (never ``allow-always`` by voice); the run then continues in the same iterator.

Interruption: the channel cancels the turn and closes the iterator; the ``finally`` sends
``chat.abort`` for the run (and waits briefly for the answer, so the next ``chat.send`` never
races a live run) and unregisters it, so nothing of it is spoken afterwards. A pending approval
of an aborted run is cancelled by the Gateway itself; a later resolve is answered "already
resolved" and handled as such.

The Gateway keeps an unanswered approval for 30 minutes (hard-coded). The channel's own
confirmation timeout (``confirmations.timeout_s``) decides instead: it resolves the request as a
denial, which is sent to the Gateway at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from voice_channel import (
    ConfirmationDecision,
    ConfirmationRequest,
    ConversationContext,
    Notice,
    RuntimeEvent,
    RuntimeMessage,
    Settings,
    SettingsError,
    TextDelta,
    ToolActivity,
    ToolPhase,
    __version__,
    env_secret,
)
from voice_channel_openclaw.client import GatewayClient
from voice_channel_openclaw.identity import DeviceIdentity, IdentityError
from voice_channel_openclaw.message import gateway_message
from voice_channel_openclaw.protocol import GatewayError, GatewayUnavailable
from voice_channel_openclaw.settings import DEFAULT_DEVICE_KEY_PATH, OpenClawSettings

__all__ = ["OpenClawRuntime", "OpenClawSession", "session_key"]

log = structlog.get_logger("voice_channel_openclaw")

#: OpenClaw's silent-reply token: a reply that is exactly this is not meant to be delivered.
NO_REPLY = "NO_REPLY"
_ABORT_WAIT_S = 1.5
_ELSEWHERE = {
    "allow": "That was already approved elsewhere. ",
    "deny": "That was already declined elsewhere. ",
    "other": "That was already decided elsewhere. ",
}
_SPOKEN_COMMAND_MAX = 160
#: The ``agent`` event ``tool`` stream's phases that start and end a tool (``update`` is neither).
_TOOL_PHASES = {"start": ToolPhase.START, "result": ToolPhase.END}
_UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9_.:-]+")


def session_key(agent_id: str, conversation_id: str) -> str:
    """``agent:<agentId>:elevenlabs:<conversation id>`` (characters outside a safe set replaced)."""
    return f"agent:{agent_id}:elevenlabs:{_UNSAFE_KEY_CHARS.sub('_', conversation_id)[:200]}"


@dataclass(eq=False)
class _Approval:
    id: str
    kind: str  # "exec" | "plugin"
    allowed: tuple[str, ...]
    #: Set when a ``*.approval.resolved`` event arrives: (decision, resolved by).
    resolved: tuple[str, str] | None = None
    #: What we sent, if we resolved it.
    sent: str | None = None


@dataclass(eq=False)
class _Run:
    """One ``chat.send`` run we are listening to."""

    run_id: str
    session_key: str
    queue: asyncio.Queue[tuple[str, Any]] = field(default_factory=asyncio.Queue)
    approvals: dict[str, _Approval] = field(default_factory=dict)
    finished: bool = False


class OpenClawRuntime:
    """The Gateway connection shared by all conversations, and the event router."""

    name = "openclaw"

    def __init__(self, settings: Settings) -> None:
        self.settings: OpenClawSettings = settings.openclaw  # type: ignore[attr-defined]
        self.apology = settings.turn.apology_text
        self.client: GatewayClient | None = None
        self._runs: dict[str, _Run] = {}
        self._approval_runs: dict[str, _Run] = {}
        #: Runs a lost chat.send answer may have left running: run id → session key, aborted once reconnected.
        self._orphans: dict[str, str] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # --- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        s = self.settings
        token = s.token.get_secret_value() if s.token else env_secret("OPENCLAW_GATEWAY_TOKEN")
        password = s.password.get_secret_value() if s.password else env_secret("OPENCLAW_GATEWAY_PASSWORD")
        key_path = Path(s.device_key_path) if s.device_key_path else DEFAULT_DEVICE_KEY_PATH
        try:
            identity = await asyncio.to_thread(DeviceIdentity.load_or_create, key_path)
        except IdentityError as exc:
            raise SettingsError(f"setting 'openclaw.device_key_path': {exc}") from None
        if not token and not password:
            log.warning(
                "openclaw_no_credentials",
                fix="set openclaw.token (or OPENCLAW_GATEWAY_TOKEN) to the Gateway's gateway.auth.token",
            )
        self.client = GatewayClient(
            s.gateway_url,
            identity=identity,
            token=token,
            password=password or None,
            display_name=s.display_name,
            version=__version__,
            connect_timeout_s=s.connect_timeout_s,
            request_timeout_s=s.request_timeout_s,
            reconnect_initial_s=s.reconnect_initial_s,
            reconnect_max_s=s.reconnect_max_s,
            on_event=self._route,
            on_state=self._on_state,
        )
        log.info("openclaw_runtime_starting", url=s.gateway_url, agent_id=s.agent_id, device_id=identity.device_id[:16])
        await self.client.start()

    async def open_session(self, context: ConversationContext) -> OpenClawSession:
        return OpenClawSession(self, context)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.client is not None:
            await self.client.aclose()
            self.client = None

    # --- runs and routing ------------------------------------------------------------------------

    def register(self, run: _Run) -> None:
        self._runs[run.run_id] = run

    def unregister(self, run: _Run) -> None:
        self._runs.pop(run.run_id, None)
        for approval_id in run.approvals:
            self._approval_runs.pop(approval_id, None)

    def _run_of_session(self, key: str | None) -> _Run | None:
        for run in self._runs.values():
            if run.session_key == key and not run.finished:
                return run
        return None

    def _route(self, event: str, payload: dict[str, Any]) -> None:
        """Called by the client for every event: hand it to the run it belongs to, or drop it."""
        if event in ("chat", "agent"):
            run = self._runs.get(str(payload.get("runId")))
            if run is not None:
                run.queue.put_nowait((event, payload))
        elif event in ("exec.approval.requested", "plugin.approval.requested"):
            request = payload.get("request") or {}
            # By run id when there is one (never attribute an old run's approval to a newer run
            # of the same session); plugin approvals may carry only the session key.
            run_id = request.get("runId")
            run = self._runs.get(str(run_id)) if run_id else self._run_of_session(request.get("sessionKey"))
            if run is not None and payload.get("id"):
                self._approval_runs[str(payload["id"])] = run
                run.queue.put_nowait(("approval", {**payload, "kind": event.split(".", 1)[0]}))
        elif event in ("exec.approval.resolved", "plugin.approval.resolved"):
            run = self._approval_runs.get(str(payload.get("id")))
            if run is not None:
                run.queue.put_nowait(("resolved", payload))

    def abort_when_connected(self, run: _Run) -> None:
        """Abort ``run`` on the Gateway as soon as the connection is back (its chat.send answer was lost)."""
        self._orphans[run.run_id] = run.session_key

    async def _abort_orphan(self, run_id: str, key: str) -> None:
        assert self.client is not None
        try:
            result = await self.client.request(
                "chat.abort", {"sessionKey": key, "runId": run_id}, timeout=_ABORT_WAIT_S
            )
            log.info("openclaw_orphan_run_aborted", run_id=run_id, aborted=(result or {}).get("aborted"))
        except (GatewayError, GatewayUnavailable) as exc:
            log.warning("openclaw_abort_failed", run_id=run_id, error=str(exc))

    def _on_state(self, connected: bool) -> None:
        if connected:
            for run_id, key in self._orphans.items():
                task = asyncio.get_running_loop().create_task(self._abort_orphan(run_id, key))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            self._orphans.clear()
        if not connected:
            for run in self._runs.values():
                run.queue.put_nowait(("disconnected", None))

    def approval_run(self, approval_id: str) -> _Run | None:
        return self._approval_runs.get(approval_id)


class OpenClawSession:
    """One conversation = one Gateway session key."""

    def __init__(self, runtime: OpenClawRuntime, context: ConversationContext) -> None:
        self._runtime = runtime
        self._settings = runtime.settings
        self.key = session_key(runtime.settings.agent_id, context.conversation_id)
        self._runs: set[_Run] = set()

    # --- a turn ----------------------------------------------------------------------------------

    async def respond(self, message: RuntimeMessage) -> AsyncIterator[RuntimeEvent]:
        client = self._runtime.client
        if client is None:
            raise RuntimeError("the openclaw runtime was not started")
        run = _Run(run_id=str(uuid.uuid4()), session_key=self.key)
        turn_log = log.bind(run_id=run.run_id, session_key=self.key)
        self._runtime.register(run)
        self._runs.add(run)
        try:
            sent = False
            try:
                await client.wait_connected(self._settings.unavailable_wait_s)
                sent = True
                ack = await client.request(
                    "chat.send",
                    {
                        "sessionKey": self.key,
                        "message": gateway_message(message),
                        "idempotencyKey": run.run_id,
                        "deliver": False,
                        # The Gateway's own limit (agents.defaults.timeoutSeconds) is 48 h by default.
                        "timeoutMs": round(self._settings.run_timeout_s * 1000),
                    },
                )
            except (GatewayUnavailable, GatewayError) as exc:
                # A refused send started nothing; an unanswered one may have started the run: the finally
                # aborts it (connection up), or the runtime does once the connection is back.
                run.finished = not (sent and isinstance(exc, GatewayUnavailable))
                if not run.finished and not client.connected:
                    run.finished = True
                    self._runtime.abort_when_connected(run)
                self._log_failure(turn_log, "openclaw_send_failed", exc)
                yield TextDelta(self._runtime.apology)
                return
            if not isinstance(ack, dict) or ack.get("runId") != run.run_id:
                # Not a run: the Gateway read the message as a command (must never happen).
                run.finished = True
                turn_log.error("openclaw_unexpected_ack", ack=ack)
                yield TextDelta(self._runtime.apology)
                return
            turn_log.debug("openclaw_run_started")
            async for event in self._stream(run, turn_log):
                yield event
        finally:
            self._runs.discard(run)
            if not run.finished:
                await self._abort(run, turn_log)
            self._runtime.unregister(run)

    async def _stream(self, run: _Run, turn_log: Any) -> AsyncIterator[RuntimeEvent]:
        """The run's events as things to speak, until its ``chat`` terminal state."""
        spoken: list[str] = []
        held = ""  # text that could still turn out to be the silent-reply token
        # Past the run's time and a request's, the Gateway has not ended it (or its end was lost): end it
        # here. The deadline is per wait, not around the loop: this generator yields to its consumer.
        deadline = asyncio.get_running_loop().time() + self._settings.run_timeout_s + self._settings.request_timeout_s
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    kind, payload = await run.queue.get()
            except TimeoutError:
                turn_log.warning("openclaw_run_timed_out", run_timeout_s=self._settings.run_timeout_s)
                yield TextDelta(self._runtime.apology)
                return  # not finished: respond()'s finally aborts it
            if kind == "agent":
                stream, data = payload.get("stream"), payload.get("data") or {}
                if stream == "assistant" and isinstance(data.get("delta"), str) and data["delta"]:
                    held += data["delta"]
                    if NO_REPLY.startswith(held.strip()):
                        continue
                    spoken.append(held)
                    yield TextDelta(held)
                    held = ""
                elif stream == "tool" and data.get("phase") in _TOOL_PHASES:
                    # The run's tool stream (cap tool-events): the channel's progress speech covers the wait.
                    yield ToolActivity(
                        _TOOL_PHASES[data["phase"]], str(data.get("name") or ""), str(data.get("toolCallId") or "")
                    )
            elif kind == "chat":
                state = payload.get("state")
                if state in ("status", "delta"):
                    continue  # progress; text comes from the agent stream
                run.finished = True
                if state == "final":
                    final = _message_text(payload.get("message"))
                    for text in self._final_remainder(final, "".join(spoken), turn_log):
                        yield TextDelta(text)
                    turn_log.info("openclaw_run_final", chars=len(final), stop_reason=payload.get("stopReason"))
                elif state == "aborted":
                    turn_log.info("openclaw_run_aborted_elsewhere", stop_reason=payload.get("stopReason"))
                else:
                    turn_log.warning(
                        "openclaw_run_error",
                        error=payload.get("errorMessage"),
                        error_kind=payload.get("errorKind"),
                    )
                    yield TextDelta(self._runtime.apology)
                return
            elif kind == "approval":
                async for event in self._approval(run, payload, turn_log):
                    yield event
            elif kind == "resolved":
                self._note_resolution(run, payload, turn_log)
            elif kind == "disconnected":
                if not await self._survived_disconnect(run, turn_log):
                    run.finished = True
                    yield TextDelta(self._runtime.apology)
                    return

    @staticmethod
    def _final_remainder(final: str, streamed: str, turn_log: Any) -> list[str]:
        """What the authoritative final text adds to what was streamed."""
        if final.strip() == NO_REPLY:
            return []
        if final.startswith(streamed):
            rest = final[len(streamed) :]
            return [rest] if rest else []
        if not streamed.strip():
            return [final]
        turn_log.warning("openclaw_final_differs", streamed_chars=len(streamed), final_chars=len(final))
        return []

    # --- approvals -------------------------------------------------------------------------------

    async def _approval(self, run: _Run, payload: dict[str, Any], turn_log: Any) -> AsyncIterator[RuntimeEvent]:
        approval_id = str(payload.get("id"))
        if approval_id in run.approvals:
            return  # the same approval again (a duplicate event, or found again after a reconnect)
        kind = payload.get("kind", "exec")
        request = payload.get("request") or {}
        allowed = tuple(request.get("allowedDecisions") or ("allow-once", "deny"))
        approval = _Approval(approval_id, kind, allowed)
        run.approvals[approval_id] = approval
        confirmation = _confirmation(approval_id, kind, request)
        approval_log = turn_log.bind(approval_id=approval_id, approval_kind=kind)
        self._drain_resolutions(run)
        if approval.resolved is not None:
            approval_log.info("openclaw_approval_decided_elsewhere", decision=approval.resolved[0])
            yield Notice(f"approval {approval.resolved[0]} elsewhere before the caller was asked", "approval")
            return
        if "allow-once" not in allowed:
            # It could not be approved by voice anyway: deny now rather than ask for nothing.
            approval_log.info("openclaw_approval_not_voice_approvable", allowed=list(allowed))
            await self._send_decision(approval, "deny", approval_log)
            yield Notice("approval denied: allow-once is not offered", "approval")
            return
        approval_log.info("openclaw_approval_requested", risk=confirmation.risk)
        yield confirmation
        # Resumed: resolve() has sent the caller's decision (or learnt it was decided elsewhere).
        if approval.resolved is not None and approval.sent is None:
            decision, by = approval.resolved
            approval_log.info("openclaw_approval_decided_elsewhere", decision=decision, resolved_by=by)
            yield TextDelta(_ELSEWHERE.get(decision[:5], _ELSEWHERE["other"]))

    def _note_resolution(self, run: _Run, payload: dict[str, Any], turn_log: Any) -> None:
        approval = run.approvals.get(str(payload.get("id")))
        if approval is None:
            return
        approval.resolved = (str(payload.get("decision")), str(payload.get("resolvedBy") or ""))
        turn_log.info(
            "openclaw_approval_resolved",
            approval_id=approval.id,
            decision=approval.resolved[0],
            by=approval.resolved[1],
        )

    async def resolve(self, request_id: str, decision: ConfirmationDecision) -> None:
        run = self._runtime.approval_run(request_id)
        approval = run.approvals.get(request_id) if run is not None else None
        if approval is None:
            log.info("openclaw_approval_unknown", approval_id=request_id)
            return
        # Drain events that arrived while the caller was being asked, so a resolution made
        # elsewhere meanwhile is known before we send ours.
        self._drain_resolutions(run)
        if approval.resolved is not None:
            log.info("openclaw_approval_not_sent", approval_id=request_id, already=approval.resolved[0])
            return
        choice = "allow-once" if decision.approved else "deny"
        await self._send_decision(approval, choice, log.bind(approval_id=request_id, reason=decision.reason))

    def _drain_resolutions(self, run: _Run) -> None:
        kept: list[tuple[str, Any]] = []
        while not run.queue.empty():
            item = run.queue.get_nowait()
            if item[0] == "resolved":
                self._note_resolution(run, item[1], log)
            kept.append(item)
        for item in kept:
            run.queue.put_nowait(item)

    async def _send_decision(self, approval: _Approval, choice: str, approval_log: Any) -> None:
        client = self._runtime.client
        assert client is not None
        if approval.kind == "plugin" and client.has_method("plugin.approval.resolve"):
            method, params = "plugin.approval.resolve", {"id": approval.id, "decision": choice}
        elif approval.kind == "plugin":
            method, params = "approval.resolve", {"id": approval.id, "kind": "plugin", "decision": choice}
        else:
            method, params = "exec.approval.resolve", {"id": approval.id, "decision": choice}
        for attempt in range(2):
            try:
                # Approvals survive a disconnect: wait for the connection to come back once.
                await client.wait_connected(self._settings.unavailable_wait_s)
                await client.request(method, params)
            except GatewayError as exc:
                if exc.already_resolved:
                    approval.resolved = approval.resolved or await self._ask_outcome(approval)
                    approval_log.info(
                        "openclaw_approval_already_resolved", choice=choice, decision=approval.resolved[0]
                    )
                else:
                    approval_log.error("openclaw_approval_resolve_failed", code=exc.code, message=exc.message)
                return
            except GatewayUnavailable as exc:
                if attempt:
                    approval_log.error("openclaw_approval_resolve_failed", error=str(exc))
                    return
                continue
            approval.sent = choice
            approval_log.info("openclaw_approval_sent", decision=choice)
            return

    async def _ask_outcome(self, approval: _Approval) -> tuple[str, str]:
        """How an approval we could not resolve ended (its ``resolved`` event may still be on the way)."""
        client = self._runtime.client
        if client is not None and client.has_method("approval.get"):
            try:
                answer = await client.request("approval.get", {"id": approval.id})
            except (GatewayError, GatewayUnavailable):
                pass
            else:
                status = str(((answer or {}).get("approval") or {}).get("status") or "")
                if status:
                    return ("allow-once" if status == "allowed" else "deny", f"status {status}")
        return ("unknown", "elsewhere")

    # --- interruption and failures ---------------------------------------------------------------

    async def _abort(self, run: _Run, turn_log: Any) -> None:
        """Stop the run on the Gateway; bounded, so a cancelled turn ends promptly."""
        client = self._runtime.client
        if client is None or not client.connected:
            turn_log.info("openclaw_abort_skipped", reason="not connected")
            return
        try:
            result = await client.request(
                "chat.abort", {"sessionKey": run.session_key, "runId": run.run_id}, timeout=_ABORT_WAIT_S
            )
            turn_log.info("openclaw_run_aborted", aborted=(result or {}).get("aborted"))
        except (GatewayError, GatewayUnavailable) as exc:
            turn_log.warning("openclaw_abort_failed", error=str(exc))

    async def _survived_disconnect(self, run: _Run, turn_log: Any) -> bool:
        """After a lost connection: is the run still alive on the Gateway (then keep listening)?"""
        client = self._runtime.client
        assert client is not None
        turn_log.warning("openclaw_disconnected_during_run")
        try:
            await client.wait_connected(self._settings.unavailable_wait_s)
            history = await client.request("chat.history", {"sessionKey": run.session_key, "limit": 1})
        except (GatewayUnavailable, GatewayError) as exc:
            self._log_failure(turn_log, "openclaw_run_lost", exc)
            return False
        # 2026.9.6 reports the session's live run as inFlightRun.runId.
        in_flight = ((history or {}).get("inFlightRun") or {}).get("runId")
        if in_flight == run.run_id:
            turn_log.info("openclaw_run_resumed_after_reconnect")
            await self._recover_approvals(run, turn_log)
            return True
        turn_log.warning("openclaw_run_lost", reason="the run ended while the connection was down")
        return False

    async def _recover_approvals(self, run: _Run, turn_log: Any) -> None:
        """Route the run's pending approvals again: one requested while the connection died was never received."""
        client = self._runtime.client
        assert client is not None
        for method, event in (
            ("exec.approval.list", "exec.approval.requested"),
            ("plugin.approval.list", "plugin.approval.requested"),
        ):
            if not client.has_method(method):
                continue
            try:
                pending = await client.request(method, {})
            except (GatewayUnavailable, GatewayError) as exc:
                self._log_failure(turn_log, "openclaw_approval_list_failed", exc)
                continue
            for payload in pending if isinstance(pending, list) else []:
                if isinstance(payload, dict) and str(payload.get("id")) not in run.approvals:
                    request = payload.get("request") or {}
                    if request.get("runId") == run.run_id or (
                        not request.get("runId") and request.get("sessionKey") == run.session_key
                    ):
                        self._runtime._route(event, payload)

    @staticmethod
    def _log_failure(turn_log: Any, event: str, exc: BaseException) -> None:
        if isinstance(exc, GatewayError):
            turn_log.error(event, code=exc.code, detail=exc.detail_code, message=exc.message, fix=exc.hint)
        else:
            turn_log.warning(event, error=str(exc))

    async def aclose(self) -> None:
        """Abort runs still open (the channel normally closed them already)."""
        for run in list(self._runs):
            if not run.finished:
                with contextlib.suppress(Exception):
                    await self._abort(run, log.bind(run_id=run.run_id))
            self._runtime.unregister(run)
        self._runs.clear()


def _message_text(message: Any) -> str:
    if not isinstance(message, dict):
        return ""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def _confirmation(approval_id: str, kind: str, request: dict[str, Any]) -> ConfirmationRequest:
    """A spoken confirmation built from the approval's structured fields only."""
    if kind == "plugin":
        title = str(request.get("title") or request.get("toolName") or "a plugin action")
        severity = str(request.get("severity") or "").lower()
        return ConfirmationRequest(
            id=approval_id,
            action=_clip(title),
            summary=_clip(str(request.get("description") or "")),
            risk="high" if severity in ("high", "critical", "danger") else "normal",
        )
    command = " ".join(str(request.get("command") or "a command").split())
    analysis = request.get("commandAnalysis") or {}
    warnings = [str(line) for line in analysis.get("warningLines") or [] if line]
    risky = bool(analysis.get("riskKinds") or warnings or request.get("warningText"))
    return ConfirmationRequest(
        id=approval_id,
        action=f"Run the command {_clip(command)}",
        summary=_clip(" ".join(warnings)),
        risk="high" if risky else "normal",
    )


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _SPOKEN_COMMAND_MAX else text[: _SPOKEN_COMMAND_MAX - 1].rstrip() + "…"
