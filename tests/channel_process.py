"""``voice-channel serve`` in a child process, watched through its JSON log and ``/proc``.

For fault tests and ``bench/soak.py``: the server is the real command line, started the way an
operator starts it, with the test-only runtime of ``tests/fault_runtime.py`` loaded through
``VOICE_CHANNEL_PLUGINS``. Tests wait for what the server *says* (its log lines, read by a thread
as they are written), not for time to pass.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parent

LogEntry = dict[str, Any]


def voice_channel_command() -> list[str]:
    """The installed ``voice-channel`` script next to this interpreter (else ``python -m``)."""
    script = Path(sys.executable).parent / "voice-channel"
    if script.exists():
        return [str(script)]
    found = shutil.which("voice-channel")
    return [found] if found else [sys.executable, "-m", "voice_channel.cli"]


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` (``/proc/<pid>/status``, VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def fd_count(pid: int) -> int:
    """Open file descriptors of ``pid`` (``/proc/<pid>/fd``)."""
    return len(os.listdir(f"/proc/{pid}/fd"))


class ServerProcess:
    """A running ``voice-channel serve`` and its parsed log.

    :param settings: ``VOICE_CHANNEL_*`` variables (without the prefix), e.g. ``{"SERVER__INIT_TIMEOUT_S": "1"}``.
    """

    def __init__(self, settings: Mapping[str, str] | None = None, *, runtime: str = "faulty") -> None:
        self.api_key = f"sk_fault_{secrets.token_hex(16)}"
        self.runtime = runtime
        self.settings = dict(settings or {})
        self.logs: list[LogEntry] = []
        self.port = 0
        self._changed = threading.Condition()
        self._process: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def start(self, timeout: float = 60) -> ServerProcess:
        env = {
            name: value for name, value in os.environ.items() if not name.startswith(("VOICE_CHANNEL_", "ELEVENLABS_"))
        }
        env.update(
            {
                "ELEVENLABS_API_KEY": self.api_key,
                "VOICE_CHANNEL_LOG_FORMAT": "json",
                "VOICE_CHANNEL_PLUGINS": "fault_runtime",
                "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH")])),
                **{f"VOICE_CHANNEL_{name}": value for name, value in self.settings.items()},
            }
        )
        self._process = subprocess.Popen(
            [*voice_channel_command(), "serve", "--runtime", self.runtime, "--host", "127.0.0.1", "--port", "0"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read_log, name="server-log", daemon=True)
        self._reader.start()
        try:
            listening = self.wait_log(lambda e: e["event"] == "listening", timeout=timeout)
        except BaseException:
            self.terminate()
            raise
        self.port = int(listening["port"])
        return self

    def _read_log(self) -> None:
        assert self._process is not None and self._process.stderr is not None
        for raw in self._process.stderr:
            try:
                entry = json.loads(raw)
            except ValueError:
                entry = {"event": "unparsed", "line": raw.decode(errors="replace").rstrip()}
            if not isinstance(entry, dict):
                entry = {"event": "unparsed", "line": repr(entry)}
            with self._changed:
                self.logs.append(entry)
                self._changed.notify_all()
        with self._changed:
            self.logs.append({"event": "__exited__"})
            self._changed.notify_all()

    # --- waiting for what the server says -------------------------------------------------------

    def wait_logs(self, predicate: Callable[[list[LogEntry]], Any], timeout: float = 20) -> Any:
        """Block until ``predicate(logs)`` is truthy (re-checked on every new line); return its value."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                result = predicate(self.logs)
                if result:
                    return result
                if self.logs and self.logs[-1]["event"] == "__exited__":
                    raise RuntimeError(f"the server exited while waiting; last lines: {self.logs[-5:]}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"not seen in the server log within {timeout}s; last lines: {self.logs[-5:]}")
                self._changed.wait(remaining)

    def wait_log(self, match: Callable[[LogEntry], bool], timeout: float = 20, start: int = 0) -> LogEntry:
        """The first line from index ``start`` on that matches."""
        return self.wait_logs(lambda logs: next((e for e in logs[start:] if match(e)), None), timeout)

    def wait_count(self, event: str, count: int, timeout: float = 20, start: int = 0, **fields: Any) -> list[LogEntry]:
        """Block until ``count`` lines of ``event`` (with ``fields``) from ``start`` on were logged; return them."""

        def enough(logs: list[LogEntry]) -> list[LogEntry] | None:
            found = [e for e in logs[start:] if e["event"] == event and all(e.get(k) == v for k, v in fields.items())]
            return found if len(found) >= count else None

        return self.wait_logs(enough, timeout)

    def mark(self) -> int:
        """The current end of the log, to look only at what comes after."""
        with self._changed:
            return len(self.logs)

    def entries(self, event: str, start: int = 0, **fields: Any) -> list[LogEntry]:
        with self._changed:
            return [
                e for e in self.logs[start:] if e["event"] == event and all(e.get(k) == v for k, v in fields.items())
            ]

    def open_conversations(self) -> int:
        """Conversations started and not yet ended, from the log."""
        with self._changed:
            started = sum(1 for e in self.logs if e["event"] == "conversation_started")
            ended = sum(1 for e in self.logs if e["event"] == "conversation_ended")
        return started - ended

    # --- the process ----------------------------------------------------------------------------

    def rss(self) -> int:
        return rss_bytes(self.pid)

    def fds(self) -> int:
        return fd_count(self.pid)

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM; wait for the exit; return the exit status (SIGKILL after ``timeout``)."""
        process = self._process
        assert process is not None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        if self._reader is not None:
            self._reader.join(10)
        if process.stderr is not None:
            process.stderr.close()
        return process.returncode

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.terminate()
