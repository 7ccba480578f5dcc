"""A scriptable OpenAI-compatible chat server for tests (aiohttp), in-process or as a subprocess.

It answers ``GET /v1/models`` and ``POST /v1/chat/completions`` (streamed SSE or not), the way
OpenAI documents them. What it says is keyed off the newest *real* user message (OpenClaw appends
an internal-context user message after it, which is skipped):

* ``run: <command>``   → a ``tool_calls`` reply calling ``exec`` with ``{"command": <command>}``;
  once a ``tool`` message follows, it streams ``Command finished: <tool output>``
* ``terminal: <command>`` → the same, calling ``terminal`` (Hermes Agent's shell tool)
* ``agenttool <seconds>`` → a server that runs its own tool: a ``tool_calls`` delta (``lookup``), that
  many seconds of nothing, then :data:`TOOL_DONE_REPLY`, in one stream
* ``hermestool <seconds>`` → the same, reported the way Hermes's API server does it
  (``event: hermes.tool.progress``, ``running`` then ``completed``)
* ``slow``             → 60 tokens, 0.25 s apart (interruption tests)
* ``cold``             → waits ``COLD_START_S`` before the first token, then the default reply
* ``stall <seconds>``  → waits that long before the first token (a model that hangs), then the default reply
* ``fail <status>``    → that HTTP status with an OpenAI error body
* ``midfail``          → two tokens, then an ``error`` chunk and the end of the stream
* ``parrot``           → ``You said: <the whole user message as received>``
* anything else        → ``Hello from the fake model.``

Everything is recorded (:class:`Call`) and every change is an event, so tests wait on
conditions instead of sleeping: in-process with :meth:`FakeOpenAI.wait_for`, across processes
with the long-poll ``GET /_events?since=N`` (see :class:`RemoteFake`). A client that closes the
stream between tokens is noticed within ~10 ms and recorded as ``closed_early``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from aiohttp import ClientSession, ClientTimeout, web

INTERNAL_PREFIX = "<<<BEGIN_OPENCLAW_INTERNAL_CONTEXT>>>"
MODEL_ID = "fake-model"
COLD_START_S = 3.0
DEFAULT_REPLY = "Hello from the fake model."
TOOL_DONE_REPLY = "The lookup is done."


@dataclass
class Call:
    """One chat-completions request and what became of it."""

    id: str
    kind: str
    user: str
    messages: list[dict[str, Any]]
    model: str | None
    stream: bool
    authorization: str | None
    status: int = 200
    tokens_sent: int = 0
    closed_early: bool = False
    finished: bool = False
    t_received: float = field(default_factory=time.time)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def real_user_index(messages: list[dict[str, Any]]) -> int:
    for index in range(len(messages) - 1, -1, -1):
        message = messages[index]
        if message.get("role") == "user" and not _text(message.get("content")).lstrip().startswith(INTERNAL_PREFIX):
            return index
    return -1


def _tokens(text: str) -> list[str]:
    return re.findall(r"\S+\s*", text) or [text]


def plan(messages: list[dict[str, Any]], cold_start_s: float = COLD_START_S) -> dict[str, Any]:
    """The scripted reply for a conversation (see the module docstring)."""
    index = real_user_index(messages)
    user = _text(messages[index].get("content")) if index >= 0 else ""
    tools = [m for m in messages[index + 1 :] if m.get("role") == "tool"] if index >= 0 else []
    if tools:
        output = _text(tools[-1].get("content")).strip().replace("\n", " ")[:200]
        return {"kind": "tool_result", "user": user, "tokens": _tokens(f"Command finished: {output}"), "delay": 0.02}
    if match := re.search(r"\bterminal:\s*([^\n<]+)", user):
        return {"kind": "tool", "user": user, "command": match.group(1).strip(), "tool": "terminal"}
    if match := re.search(r"\brun:\s*([^\n<]+)", user):
        return {"kind": "tool", "user": user, "command": match.group(1).strip()}
    if match := re.search(r"\b(agenttool|hermestool) (\d+(?:\.\d+)?)\b", user):
        kind = "agent_tool" if match.group(1) == "agenttool" else "hermes_tool"
        return {
            "kind": kind,
            "user": user,
            "tokens": _tokens(TOOL_DONE_REPLY),
            "delay": 0.02,
            "tool_s": float(match.group(2)),
        }
    if match := re.search(r"\bfail (\d{3})\b", user):
        return {"kind": "fail", "user": user, "status": int(match.group(1))}
    if re.search(r"\bmidfail\b", user):
        return {"kind": "midfail", "user": user, "tokens": ["Partial ", "answer "], "delay": 0.02}
    if re.search(r"\bslow\b", user, re.IGNORECASE):
        return {"kind": "slow", "user": user, "tokens": [f"tok{i} " for i in range(60)], "delay": 0.25}
    if re.search(r"\bparrot\b", user):
        return {"kind": "parrot", "user": user, "tokens": _tokens(f"You said: {user}"), "delay": 0.0}
    if match := re.search(r"\bstall (\d+(?:\.\d+)?)\b", user):
        first = float(match[1])
        return {"kind": "stall", "user": user, "tokens": _tokens(DEFAULT_REPLY), "delay": 0.02, "first": first}
    if re.search(r"\bcold\b", user):
        return {"kind": "cold", "user": user, "tokens": _tokens(DEFAULT_REPLY), "delay": 0.02, "first": cold_start_s}
    return {"kind": "text", "user": user, "tokens": _tokens(DEFAULT_REPLY), "delay": 0.02}


class FakeOpenAI:
    """The server's state and handlers. ``app()`` builds the aiohttp application."""

    def __init__(self, cold_start_s: float = COLD_START_S) -> None:
        self.cold_start_s = cold_start_s
        self.calls: list[Call] = []
        self.events: list[dict[str, Any]] = []
        self._changed: asyncio.Condition | None = None

    # --- waiting ---------------------------------------------------------------------------------

    def _condition(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    async def _event(self, kind: str, call: Call) -> None:
        self.events.append({"seq": len(self.events) + 1, "kind": kind, "call": asdict(call)})
        async with self._condition():
            self._condition().notify_all()

    async def wait_for(self, predicate: Callable[[list[Call]], Any], timeout: float = 15) -> Any:
        """Wait until ``predicate(calls)`` is truthy; return its value."""
        async with asyncio.timeout(timeout), self._condition():
            while not (result := predicate(self.calls)):
                await self._condition().wait()
            return result

    # --- HTTP ------------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/_events", self._events)
        app.router.add_post("/_reset", self._reset)
        return app

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"object": "list", "data": [{"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "fake"}]}
        )

    async def _reset(self, request: web.Request) -> web.Response:
        self.calls.clear()
        return web.json_response({"ok": True})

    async def _events(self, request: web.Request) -> web.Response:
        """Long poll: events with ``seq > since``, waiting up to ``timeout`` seconds for one."""
        since = int(request.query.get("since", "0"))
        timeout = float(request.query.get("timeout", "10"))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout), self._condition():
                while len(self.events) <= since:
                    await self._condition().wait()
        return web.json_response(self.events[since:])

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        messages = body.get("messages") or []
        script = plan(messages, self.cold_start_s)
        call = Call(
            id=f"chatcmpl-{uuid.uuid4().hex[:12]}",
            kind=script["kind"],
            user=script["user"],
            messages=messages,
            model=body.get("model"),
            stream=bool(body.get("stream")),
            authorization=request.headers.get("Authorization"),
        )
        self.calls.append(call)
        await self._event("received", call)
        try:
            if script["kind"] == "fail":
                call.status = script["status"]
                return web.json_response(
                    {"error": {"message": f"scripted failure {call.status}", "type": "server_error", "code": None}},
                    status=call.status,
                )
            if call.stream:
                return await self._stream(request, call, script)
            return self._complete(call, script)
        except asyncio.CancelledError:
            # aiohttp cancels the handler when the client hangs up (handler_cancellation).
            call.closed_early = True
            await self._event("closed_early", call)
            raise
        finally:
            call.finished = True
            await self._event("finished", call)

    def _complete(self, call: Call, script: dict[str, Any]) -> web.Response:
        if script["kind"] == "tool":
            message: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": [self._tool_call(script)]}
            finish = "tool_calls"
        else:
            message = {"role": "assistant", "content": "".join(script["tokens"])}
            finish = "stop"
        call.tokens_sent = len(script.get("tokens", []))
        return web.json_response(
            {
                "id": call.id,
                "object": "chat.completion",
                "created": int(time.time()),
                "model": MODEL_ID,
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 8, "total_tokens": 18},
            }
        )

    @staticmethod
    def _tool_call(script: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": f"call_{uuid.uuid4().hex[:12]}",
            "type": "function",
            "function": {"name": script.get("tool", "exec"), "arguments": json.dumps({"command": script["command"]})},
        }

    async def _stream(self, request: web.Request, call: Call, script: dict[str, Any]) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)

        async def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> None:
            payload = {
                "id": call.id,
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": MODEL_ID,
                "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}],
                **extra,
            }
            await response.write(b"data: " + json.dumps(payload).encode() + b"\n\n")

        try:
            await chunk({"role": "assistant", "content": ""})
            if script["kind"] == "tool":
                tool = self._tool_call(script)
                arguments = tool["function"]["arguments"]
                tool["function"]["arguments"] = ""
                await chunk({"tool_calls": [{"index": 0, **tool}]})
                await chunk({"tool_calls": [{"index": 0, "function": {"arguments": arguments}}]})
                await chunk({}, "tool_calls")
            elif script["kind"] in ("agent_tool", "hermes_tool"):
                # A server running its own tool inside one reply, then answering.
                call_id = f"call_{uuid.uuid4().hex[:12]}"
                if script["kind"] == "agent_tool":
                    function = {"name": "lookup", "arguments": "{}"}
                    await chunk({"tool_calls": [{"index": 0, "id": call_id, "type": "function", "function": function}]})
                else:
                    await self._hermes_tool(response, call_id, "running")
                if not await self._pause(request, script["tool_s"]):
                    return await self._closed(call, response)
                if script["kind"] == "hermes_tool":
                    await self._hermes_tool(response, call_id, "completed")
                for token in script["tokens"]:
                    await chunk({"content": token})
                    call.tokens_sent += 1
                await chunk({}, "stop")
            else:
                if not await self._pause(request, script.get("first", 0.0)):
                    return await self._closed(call, response)
                for index, token in enumerate(script["tokens"]):
                    if index and not await self._pause(request, script["delay"]):
                        return await self._closed(call, response)
                    await chunk({"content": token})
                    call.tokens_sent = index + 1
                    if index == 0:
                        await self._event("first_token", call)
                if script["kind"] == "midfail":
                    await response.write(
                        b'data: {"error": {"message": "upstream model crashed", "type": "server_error"}}\n\n'
                    )
                    return response
                await chunk({}, "stop")
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
        except ConnectionResetError:
            return await self._closed(call, response)
        return response

    @staticmethod
    async def _hermes_tool(response: web.StreamResponse, call_id: str, status: str) -> None:
        payload = {"tool": "lookup", "toolCallId": call_id, "status": status}
        await response.write(b"event: hermes.tool.progress\ndata: " + json.dumps(payload).encode() + b"\n\n")

    @staticmethod
    async def _pause(request: web.Request, seconds: float) -> bool:
        """Sleep like a slow model, noticing a client that hangs up; False if it did."""
        deadline = time.monotonic() + seconds
        while True:
            if request.transport is None or request.transport.is_closing():
                return False
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            await asyncio.sleep(min(0.01, left))

    async def _closed(self, call: Call, response: web.StreamResponse) -> web.StreamResponse:
        call.closed_early = True
        await self._event("closed_early", call)
        return response


class RemoteFake:
    """Test-side view of a fake running in another process: wait on its event stream."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.seen: list[dict[str, Any]] = []

    async def wait_for(self, predicate: Callable[[list[dict[str, Any]]], Any], timeout: float = 30) -> Any:
        """Wait until ``predicate(calls)`` is truthy, ``calls`` being the latest state of each call (dicts)."""
        async with asyncio.timeout(timeout), ClientSession(timeout=ClientTimeout(total=None)) as http:
            while True:
                if result := predicate(self.calls()):
                    return result
                url = f"{self.base_url}/_events?since={len(self.seen)}&timeout=10"
                async with http.get(url) as response:
                    self.seen.extend(await response.json())

    def calls(self) -> list[dict[str, Any]]:
        latest: dict[str, dict[str, Any]] = {}
        for event in self.seen:
            latest[event["call"]["id"]] = event["call"]
        return list(latest.values())

    async def sync(self) -> list[dict[str, Any]]:
        """Fetch every event so far (no waiting) and return the calls."""
        async with ClientSession() as http, http.get(f"{self.base_url}/_events?since={len(self.seen)}&timeout=0") as r:
            self.seen.extend(await r.json())
        return self.calls()


def main() -> None:
    parser = argparse.ArgumentParser(description="Scriptable OpenAI-compatible chat server for tests")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18800)
    parser.add_argument("--cold-start-s", type=float, default=COLD_START_S)
    args = parser.parse_args()
    web.run_app(FakeOpenAI(args.cold_start_s).app(), host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
