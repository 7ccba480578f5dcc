"""The ``openai`` runtime: streamed chat completions over aiohttp.

One :class:`aiohttp.ClientSession` is shared by all conversations (connection pooling); each turn
is one ``POST {base_url}/chat/completions`` with ``stream: true``. The request carries the voice
system prompt, the conversation so far *from the channel's own record* (never the history
ElevenLabs sends back) and the new utterance, all caller text wrapped in the spotlighting
boundary.

Interruption: the channel cancels the turn task and closes this iterator; either way the
``finally`` below closes the HTTP response, which closes its connection, so the server sees the
client go away (and a server that watches for that stops generating).

Tool calls are the server's business; when the stream shows one running (a ``tool_calls`` delta, or
Hermes's ``hermes.tool.progress`` events), it is reported as :class:`~voice_channel.runtime.ToolActivity`
so the channel can tell the caller to hold on (:mod:`voice_channel_openai.tools`).

Upstream trouble (an HTTP error status, an ``error`` event in the stream, a stream that ends
without ``data: [DONE]``, a refused connection, a timeout) is logged with what is known (the
status, the start of the body) and answered with the channel's short apology after whatever text
already streamed; nothing of the server's error text is spoken.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import structlog

from voice_channel import (
    ConfirmationDecision,
    ConversationContext,
    Notice,
    RuntimeEvent,
    RuntimeMessage,
    Settings,
    TextDelta,
    spotlight,
)
from voice_channel_openai.prompt import system_prompt
from voice_channel_openai.settings import OpenAISettings
from voice_channel_openai.sse import StreamLineTooLong, iter_events
from voice_channel_openai.tools import HERMES_TOOL_EVENT, ToolCalls

__all__ = ["OpenAIRuntime", "OpenAISession", "UpstreamError"]

log = structlog.get_logger("voice_channel_openai")

_BODY_EXCERPT = 300
#: After ``data: [DONE]``, how long and how much of the rest of the body (the chunked terminator) is read so the
#: connection can go back to the pool; a server that sends more than this, or takes longer, loses its connection.
_DRAIN_S = 0.5
_DRAIN_BYTES = 64 * 1024


class UpstreamError(Exception):
    """The server answered, but not with a usable stream."""

    def __init__(self, reason: str, *, status: int | None = None, detail: str = "") -> None:
        super().__init__(f"{reason} (status {status})" if status else reason)
        self.reason = reason
        self.status = status
        self.detail = detail


class OpenAIRuntime:
    """Shared HTTP client; one :class:`OpenAISession` per conversation."""

    name = "openai"

    def __init__(self, settings: Settings) -> None:
        self.settings: OpenAISettings = settings.openai  # type: ignore[attr-defined]
        self.apology = settings.turn.apology_text
        self.http: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        s = self.settings
        headers = {"Accept": "text/event-stream"}
        if s.api_key is not None:
            headers["Authorization"] = f"Bearer {s.api_key.get_secret_value()}"
        self.http = aiohttp.ClientSession(
            # No pool limit (aiohttp's default is 100): a turn never waits, silent, for another's stream to
            # end; server.max_conversations bounds the connections.
            connector=aiohttp.TCPConnector(limit=0),
            headers=headers,
            timeout=aiohttp.ClientTimeout(
                total=s.total_timeout_s, sock_connect=s.connect_timeout_s, sock_read=s.read_timeout_s
            ),
        )
        log.info("openai_runtime_ready", base_url=s.base_url, model=s.model, api_key_set=s.api_key is not None)

    async def open_session(self, context: ConversationContext) -> OpenAISession:
        return OpenAISession(self, context)

    async def aclose(self) -> None:
        if self.http is not None:
            await self.http.close()
            self.http = None


class OpenAISession:
    """One conversation: builds each request from the channel's record and streams the reply."""

    def __init__(self, runtime: OpenAIRuntime, context: ConversationContext) -> None:
        self._runtime = runtime
        self._context = context
        self._settings = runtime.settings

    def request_body(self, message: RuntimeMessage) -> dict[str, Any]:
        """The chat-completions request for ``message`` (history from the channel's record)."""
        s = self._settings
        boundary = self._context.boundary
        messages: list[dict[str, str]] = [{"role": "system", "content": system_prompt(boundary, s.system_prompt)}]
        history = self._context.record.as_messages()
        if s.max_history_messages < len(history):
            history = history[len(history) - s.max_history_messages :]
        for item in history:
            if item["role"] == "user":
                messages.append({"role": "user", "content": spotlight(item["content"], boundary)})
            else:
                messages.append({"role": "assistant", "content": item["content"]})
        messages.append({"role": "user", "content": message.prompt})
        body: dict[str, Any] = {"model": s.model, "messages": messages, "stream": True}
        if s.temperature is not None:
            body["temperature"] = s.temperature
        if s.max_tokens is not None:
            body["max_tokens"] = s.max_tokens
        return body

    async def respond(self, message: RuntimeMessage) -> AsyncIterator[RuntimeEvent]:
        http = self._runtime.http
        if http is None:
            raise RuntimeError("the openai runtime was not started")
        url = f"{self._settings.base_url}/chat/completions"
        started = time.perf_counter()
        response: aiohttp.ClientResponse | None = None
        completed = False
        try:
            try:
                response = await http.post(url, json=self.request_body(message))
                if response.status != 200:
                    detail = (await response.text(errors="replace"))[:_BODY_EXCERPT]
                    raise UpstreamError("HTTP error", status=response.status, detail=detail)
                async for event in self._events(response, started):
                    yield event
                completed = True
            except UpstreamError as exc:
                log.warning("openai_upstream_error", reason=exc.reason, status=exc.status, detail=exc.detail, url=url)
                yield TextDelta(self._runtime.apology)
            except (TimeoutError, aiohttp.ServerTimeoutError):
                log.warning("openai_upstream_timeout", url=url, elapsed_s=round(time.perf_counter() - started, 2))
                yield TextDelta(self._runtime.apology)
            except aiohttp.ClientError as exc:
                log.warning(
                    "openai_upstream_unreachable",
                    url=url,
                    status=response.status if response is not None else None,
                    error=f"{type(exc).__name__}: {exc}",
                )
                yield TextDelta(self._runtime.apology)
        finally:
            # Interrupted (CancelledError while reading, GeneratorExit at a yield) or failed: close
            # the connection now so the server stops; a completed stream goes back to the pool once
            # the end of its body (read briefly after [DONE]) is in.
            if response is not None:
                reusable = False
                try:
                    reusable = completed and await _drained(response)
                finally:
                    if reusable:
                        response.release()
                    else:
                        response.close()
                        if not completed:
                            log.debug("openai_stream_closed", url=url)

    async def _events(self, response: aiohttp.ClientResponse, started: float) -> AsyncIterator[RuntimeEvent]:
        content_type = response.headers.get("Content-Type", "")
        if "text/event-stream" not in content_type:
            # A server that ignores ``stream: true`` answers with one JSON completion.
            try:
                body = await response.json(content_type=None)
            except ValueError:
                raise UpstreamError("not a stream and not JSON", detail=content_type) from None
            text = _completion_text(body)
            if text:
                yield TextDelta(text)
            return
        first = True
        tools = ToolCalls()
        finish_reason: str | None = None
        events = iter_events(response.content.iter_any())
        try:
            async for event in events:
                if event.event == HERMES_TOOL_EVENT:
                    for activity in tools.from_hermes_event(event.data):
                        yield activity
                    continue
                if event.event == "error":
                    # Not a chat-completions event, but what some servers and proxies send when the reply fails.
                    raise UpstreamError("error event in stream", detail=event.data[:_BODY_EXCERPT])
                if event.event != "message":
                    yield Notice(event.data[:200], kind=event.event)
                    continue
                if event.data.strip() == "[DONE]":
                    for activity in tools.end_all():
                        yield activity
                    return
                try:
                    chunk = json.loads(event.data)
                except json.JSONDecodeError:
                    raise UpstreamError("malformed stream event", detail=event.data[:_BODY_EXCERPT]) from None
                if not isinstance(chunk, dict):
                    continue
                if chunk.get("error"):
                    raise UpstreamError("error in stream", detail=json.dumps(chunk["error"])[:_BODY_EXCERPT])
                choice = _first_choice(chunk)
                if choice is None:
                    continue  # usage-only chunk
                delta = choice.get("delta") or {}
                if not isinstance(delta, dict):
                    raise UpstreamError("malformed stream event", detail=event.data[:_BODY_EXCERPT])
                content = _text_of(delta.get("content"))
                if content:
                    if first:
                        first = False
                        log.debug("openai_first_token", ms=round((time.perf_counter() - started) * 1000, 1))
                    for activity in tools.end_all():  # the server talks again: its tools are done
                        yield activity
                    yield TextDelta(content)
                if delta.get("tool_calls"):
                    # Tools are the server's business (nothing to run or confirm here); the caller hears progress.
                    for activity in tools.from_delta(delta["tool_calls"]):
                        yield activity
                if choice.get("finish_reason") == "error":
                    raise UpstreamError("the server ended the reply with an error", detail=json.dumps(chunk)[:300])
                if isinstance(choice.get("finish_reason"), str):
                    finish_reason = choice["finish_reason"]
        except StreamLineTooLong as exc:
            raise UpstreamError("malformed stream", detail=str(exc)) from None
        finally:
            await events.aclose()
        # The connection ended before ``data: [DONE]``: a proxy or server that died mid-reply. What
        # streamed stands (it was spoken); the caller must not take it for the whole answer.
        raise UpstreamError("stream ended without [DONE]", detail=f"last finish_reason: {finish_reason}")

    async def resolve(self, request_id: str, decision: ConfirmationDecision) -> None:
        """Plain chat completions never ask for confirmation."""

    async def aclose(self) -> None:
        """Nothing per conversation: the HTTP client belongs to the runtime."""


async def _drained(response: aiohttp.ClientResponse) -> bool:
    """Read what follows ``data: [DONE]`` (bounded): ``True`` when the body ended, so the connection is reusable."""
    left = _DRAIN_BYTES
    try:
        async with asyncio.timeout(_DRAIN_S):
            while left > 0 and (data := await response.content.readany()):
                left -= len(data)
    except (TimeoutError, aiohttp.ClientError):
        return False
    return response.content.at_eof()


def _text_of(content: Any) -> str:
    """A message's or delta's text: a string, or a list of content parts (``{"type": "text", "text": ...}``)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str))
    return ""


def _first_choice(chunk: dict[str, Any]) -> dict[str, Any] | None:
    choices = chunk.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        return choices[0]
    return None


def _completion_text(body: Any) -> str:
    if not isinstance(body, dict):
        return ""
    if body.get("error"):
        raise UpstreamError("error response", detail=json.dumps(body["error"])[:_BODY_EXCERPT])
    choice = _first_choice(body)
    message = (choice or {}).get("message") or {}
    if not isinstance(message, dict):
        raise UpstreamError("malformed completion", detail=json.dumps(body)[:_BODY_EXCERPT])
    return _text_of(message.get("content"))
