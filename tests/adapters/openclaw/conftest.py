"""Fixtures for the real-Gateway tier: one isolated OpenClaw Gateway per test module.

Slow (a Gateway takes ~10 s to start and ~1.2 GB of RAM), so these tests are marked ``slow``;
they skip when the Gateway is not installed (``make test-openclaw`` installs it) and fail
instead under ``CI``. Modules run one after the other, so at most one Gateway runs at a time.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from openclaw_sandbox import RunningGateway, start_gateway

from processes import stop_process


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    running = start_gateway(tmp_path_factory.mktemp("openclaw"))
    try:
        yield running
    finally:
        running.sandbox.stop()
        stop_process(running.fake_process)
