"""Helpers for tests that run real peers as child processes (fake model servers, gateways)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_until(
    condition: Callable[[], bool], *, timeout: float, what: str, process: subprocess.Popen | None = None
) -> float:
    """Wait for an external process to reach a state that it does not announce otherwise.

    This is a readiness probe of another program (is the port open yet?), retried with a short
    back-off; it fails early if ``process`` exits. Returns the seconds waited.
    """
    start = time.monotonic()
    delay = 0.05
    while not condition():
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what}: process exited with status {process.returncode}")
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"{what}: not ready after {timeout:.0f}s")
        time.sleep(delay)
        delay = min(delay * 2, 0.5)
    return time.monotonic() - start


def stop_process(process: subprocess.Popen, timeout: float = 20) -> None:
    """SIGTERM, wait, then SIGKILL: only the process we started (it runs in its own session)."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def start_fake_openai(log_path: Path, cold_start_s: float = 3.0) -> tuple[subprocess.Popen, int]:
    """Run tests/fake_openai.py in a child process; return it and its port once it listens."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "fake_openai", "--port", str(port), "--cold-start-s", str(cold_start_s)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    wait_until(lambda: port_open(port), timeout=30, what="fake OpenAI server", process=process)
    return process, port


def must_run() -> bool:
    """Whether a missing tool fails a test instead of skipping it.

    ``make test`` installs every tool the tiers need and sets ``VOICE_CHANNEL_TESTS_STRICT=1``; CI sets ``CI``.
    A plain ``pytest`` run on a machine without them still skips, naming the tool.
    """
    return bool(os.environ.get("VOICE_CHANNEL_TESTS_STRICT") or os.environ.get("CI"))


def require(condition: bool, reason: str) -> None:
    """Skip when a test's tool is missing, but fail where every tool must be there (:func:`must_run`)."""
    if condition:
        return
    if must_run():
        pytest.fail(f"{reason} (`make test` installs it; a missing tool fails the run)")
    pytest.skip(reason)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the child gets SIGTERM if the test process dies, so a killed test run leaves no load behind."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


@contextmanager
def cpu_load(workers: int, *, limit_s: int = 3600) -> Iterator[subprocess.Popen]:
    """Keep ``workers`` CPUs busy with ``stress-ng --cpu`` for the duration of the block; always stopped.

    stress-ng runs in its own process group, which is terminated (then killed) on exit; it also dies with this
    process (parent-death signal) and stops by itself after ``limit_s``.
    """
    binary = shutil.which("stress-ng")
    require(binary is not None, "stress-ng is not installed (apt-get install stress-ng)")
    assert binary is not None
    process = subprocess.Popen(
        [binary, "--cpu", str(workers), "--timeout", f"{limit_s}s", "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=_die_with_parent,
    )
    try:
        yield process
    finally:
        for sig, wait_s in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            if process.poll() is not None:
                break
            with suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
            with suppress(subprocess.TimeoutExpired):
                process.wait(wait_s)
