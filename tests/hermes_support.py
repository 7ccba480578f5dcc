"""Helpers for running Hermes Agent's real gateway in-process (tests and ``bench/hermes_first_chunk.py``).

* :class:`FakeLLM`: an OpenAI-compatible server on 127.0.0.1 (stdlib only) that streams tokens and
  tool calls. It answers by the *content* of a request, never by call order, because Hermes also
  sends auxiliary requests (session titles) to the same endpoint.
* :func:`prepare_hermes_home`: a fresh ``HERMES_HOME`` with a ``config.yaml``, the environment a
  hermetic gateway needs, and the plugin enabled with the real ``hermes plugins enable`` command.

Hermes reads ``$HERMES_HOME/config.yaml`` when ``gateway.run`` is *imported* (and copies parts of it
into ``os.environ``), so all of this must happen before any Hermes module is imported.
"""

from __future__ import annotations

import contextvars
import json
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

PLATFORM = "elevenlabs_voice"
PLUGIN = "elevenlabs-voice"
HERMES = str(Path(sys.executable).with_name("hermes"))

#: Environment for every Hermes process: no runtime pip installs, no tirith download, no shell probes.
HERMETIC_ENV = {
    "HERMES_DISABLE_LAZY_INSTALLS": "1",
    "TIRITH_ENABLED": "false",
    "HERMES_GATEWAY_BUSY_ACK_ENABLED": "true",  # on, to show the adapter never speaks them
}

MEDIUM_REPLY = (
    "Sure. Here is a short answer in a few sentences. The first part is done, and the second part follows now. "
    "That is all for today."
)


def in_agent_thread(hook: Any, *, session_key: str, platform: str = PLATFORM, **kwargs: Any) -> None:
    """Call a Hermes plugin hook the way Hermes does: in a worker thread, with the gateway's session
    variables (``platform``, ``session_key``) bound, and wait for it."""
    from gateway.session_context import set_session_vars

    def run() -> None:
        set_session_vars(platform=platform, session_key=session_key)
        hook(**kwargs)

    thread = threading.Thread(target=contextvars.Context().run, args=(run,))
    thread.start()
    thread.join()


def slow_words(count: int) -> str:
    return " ".join(f"word{i}" for i in range(count))


@dataclass
class StreamRecord:
    kind: str  # "text" | "tool_call" | "after_tool" | "aux"
    user_text: str
    t_request: float
    t_first_chunk: float | None = None
    t_end: float | None = None
    chunks_sent: int = 0
    completed: bool = False
    closed_early: bool = False


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


class FakeLLM:
    """OpenAI-compatible chat completions, driven by what the caller said.

    For the main agent's requests (they carry ``tools``), the newest user text decides:

    * ``RUN:<command>`` (ending at `` ::`` or the line end) → a ``terminal`` tool call;
    * ``WRITE:<path>`` → a ``write_file`` tool call writing ``voice`` to ``<path>``;
    * ``SLOW`` → ``slow_words`` words, one per ``token_delay``;
    * ``MEDIUM`` → :data:`MEDIUM_REPLY`, word by word;
    * anything else → ``You said <first line of the caller's words>``.

    After a tool result it answers ``Done. Tool said: <start of the result>``.
    """

    def __init__(self, token_delay: float = 0.02, slow_count: int = 300) -> None:
        self.token_delay = token_delay
        self.slow_count = slow_count
        self.requests: list[dict[str, Any]] = []
        self.streams: list[StreamRecord] = []
        self._changed = threading.Condition()
        self._httpd: ThreadingHTTPServer | None = None

    def start(self) -> FakeLLM:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, name="fake-llm", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    @property
    def base_url(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, predicate: Any, timeout: float = 30.0) -> bool:
        """Block (in a thread) until ``predicate()`` holds; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
        return True

    def streams_for(self, marker: str) -> list[StreamRecord]:
        return [s for s in self.streams if s.kind != "aux" and marker in s.user_text]

    def tool_results(self, marker: str = "") -> list[str]:
        """Tool results the agent sent back, in requests whose newest user text contains ``marker``."""
        results = []
        for request in self.requests:
            messages = request.get("messages") or []
            user_text = next((_text_of(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")
            if messages and messages[-1].get("role") == "tool" and marker in user_text:
                results.append(_text_of(messages[-1].get("content")))
        return results

    def plan(self, body: dict[str, Any]) -> tuple[str, str, Any]:
        messages = body.get("messages") or []
        system = _text_of(messages[0].get("content")) if messages and messages[0].get("role") == "system" else ""
        user_text = _newest_utterance(
            next((_text_of(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")
        )
        if not (body.get("tools") or system.startswith("You are Hermes Agent")):
            return "aux", user_text, "Voice call"
        last = messages[-1] if messages else {}
        if last.get("role") == "tool":
            said = " ".join(_text_of(last.get("content")).split())[:80]
            return "after_tool", user_text, f"Done. Tool said: {said}"
        if match := re.search(r"RUN:(.+?)(?: ::|\n|$)", user_text):
            return "tool_call", user_text, ("terminal", {"command": match.group(1).strip()})
        if match := re.search(r"WRITE:(\S+)", user_text):
            return "tool_call", user_text, ("write_file", {"path": match.group(1), "content": "voice"})
        if match := re.search(r"FAIL(\d{3})", user_text):
            return "fail", user_text, int(match.group(1))
        if "SLOW" in user_text:
            return "text", user_text, slow_words(self.slow_count)
        if "MEDIUM" in user_text:
            return "text", user_text, MEDIUM_REPLY
        spoken = [line for line in user_text.splitlines() if line.strip()]
        return "text", user_text, f"You said {(spoken[0] if spoken else user_text).strip()[:80]}"


_CALLER_SPEECH = re.compile(r"<<caller-speech (vc-[0-9a-f]+)>>\n(.*?)\n<<end-caller-speech \1>>", re.DOTALL)


def _newest_utterance(user_text: str) -> str:
    """The caller's words in the newest utterance of a user message (the whole text if it has no marker).

    After an interrupted run Hermes keeps the unanswered utterance and merges it with the next one into one user
    message, and it may add notes of its own ("[System note: ...]"); a model answers the newest words.
    """
    blocks = _CALLER_SPEECH.findall(user_text)
    return blocks[-1][1] if blocks else user_text


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    body: dict[str, Any] = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": "fake-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if finish:
        body["usage"] = {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def _tool_call(name: str, args: dict[str, Any]) -> dict[str, Any]:
    return {
        "index": 0,
        "id": f"call_{abs(hash((name, json.dumps(args)))) % 10**8}",
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(args)},
    }


def _handler(llm: FakeLLM) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _json(self, code: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._json(
                200, {"object": "list", "data": [{"id": "fake-model", "object": "model", "context_length": 128000}]}
            )

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if not self.path.endswith("/chat/completions"):
                self._json(404, {"error": {"message": "not found"}})
                return
            body = json.loads(raw or b"{}")
            record_time = time.monotonic()
            kind, user_text, payload = llm.plan(body)
            record = StreamRecord(kind, user_text, record_time)
            llm.requests.append(body)
            llm.streams.append(record)
            llm.notify()
            if kind == "fail":
                self._json(payload, {"error": {"message": f"upstream exploded ({payload})", "type": "server_error"}})
                record.t_end = time.monotonic()
                llm.notify()
                return
            if not body.get("stream"):
                message: dict[str, Any] = {"role": "assistant", "content": None if kind == "tool_call" else payload}
                if kind == "tool_call":
                    message["tool_calls"] = [_tool_call(*payload)]
                self._json(
                    200,
                    {
                        "id": "chatcmpl-fake",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": "fake-model",
                        "choices": [
                            {
                                "index": 0,
                                "message": message,
                                "finish_reason": "tool_calls" if kind == "tool_call" else "stop",
                            }
                        ],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                    },
                )
                record.completed, record.t_end = True, time.monotonic()
                llm.notify()
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            try:
                self._write(record, _chunk({"role": "assistant", "content": ""}))
                if kind == "tool_call":
                    self._write(record, _chunk({"tool_calls": [_tool_call(*payload)]}))
                    self._write(record, _chunk({}, finish="tool_calls"))
                else:
                    for index, word in enumerate(str(payload).split(" ")):
                        if index and llm.token_delay and kind != "aux":
                            time.sleep(llm.token_delay)  # a model generating tokens (peer-side pacing)
                        self._write(record, _chunk({"content": word if index == 0 else " " + word}))
                    self._write(record, _chunk({}, finish="stop"))
                self._write(record, b"data: [DONE]\n\n")
                record.completed = True
            except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
                record.closed_early = True
            finally:
                record.t_end = time.monotonic()
                llm.notify()

        def _write(self, record: StreamRecord, data: bytes) -> None:
            self.wfile.write(data)
            self.wfile.flush()
            if record.t_first_chunk is None:
                record.t_first_chunk = time.monotonic()
            record.chunks_sent += 1

    return Handler


def hermes_config(base_url: str, *, extra: dict[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    """A ``config.yaml`` for the in-process gateway: the fake model, manual approvals, our platform."""
    config: dict[str, Any] = {
        "model": {"provider": "custom", "base_url": base_url, "api_key": "sk-test", "default": "fake-model"},
        "toolsets": ["terminal", "file"],
        "approvals": {"mode": "manual", "timeout": 60},
        "agent": {"environment_probe": False},
        "security": {"tirith_enabled": False},
        "platforms": {PLATFORM: {"enabled": True, "extra": extra or {}}},
    }
    config.update(top)
    return config


def prepare_hermes_home(home: Path, config: dict[str, Any], api_key: str) -> dict[str, str]:
    """Write ``config.yaml``, set the process environment, enable the plugin with Hermes's own CLI.

    Returns the environment (for Hermes subprocesses). Call before importing any Hermes module.
    """
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.yaml").write_text(yaml.safe_dump(config))
    env = {**HERMETIC_ENV, "HERMES_HOME": str(home), "ELEVENLABS_API_KEY": api_key}
    os.environ.update(env)
    os.environ.pop("HERMES_YOLO_MODE", None)
    hermes_cli("plugins", "enable", PLUGIN, "--no-allow-tool-override", env=env)
    return env


def hermes_cli(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the real ``hermes`` command; raise with its output if it fails."""
    full_env = {**os.environ, **env}
    done = subprocess.run(
        [HERMES, *args], env=full_env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    if done.returncode != 0:
        raise RuntimeError(f"hermes {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done
