"""Fixtures for the real-Gateway tier: one isolated OpenClaw Gateway per test module.

Slow (a Gateway takes ~10 s to start and ~1.2 GB of RAM), so these tests are marked ``slow``;
they skip when the Gateway is not installed (``make test-openclaw`` installs it) and fail
instead under ``CI``. Modules run one after the other, so at most one Gateway runs at a time.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import openclaw_sandbox as gw

from fake_openai import RemoteFake
from processes import free_port, port_open, require, start_fake_openai, stop_process, wait_until


@dataclass
class RunningGateway:
    sandbox: gw.Sandbox
    fake: RemoteFake
    fake_process: Any

    def restart(self) -> None:
        self.sandbox.stop()
        self.sandbox.start()

    def wait_ready(self, timeout: float = 120) -> None:
        wait_ready(self.sandbox, timeout)


async def _connect_probe(sandbox: gw.Sandbox, timeout: float) -> None:
    from voice_channel_openclaw.client import GatewayClient
    from voice_channel_openclaw.identity import DeviceIdentity

    client = GatewayClient(
        sandbox.url, identity=DeviceIdentity.generate(), token=sandbox.token, reconnect_initial_s=0.2, reconnect_max_s=1
    )
    await client.start()
    try:
        await client.wait_connected(timeout)  # retries refused connects and UNAVAILABLE itself
    finally:
        await client.aclose()


def wait_ready(sandbox: gw.Sandbox, timeout: float = 120) -> None:
    """Until the Gateway answers ``connect`` with hello-ok."""
    assert sandbox.process is not None
    wait_until(lambda: port_open(sandbox.port), timeout=timeout, what="OpenClaw Gateway port", process=sandbox.process)
    asyncio.run(_connect_probe(sandbox, timeout))


def start_gateway(root: Path, config: dict[str, Any] | None = None) -> RunningGateway:
    require(
        gw.is_installed(),
        f"the OpenClaw Gateway is not installed ({gw.APP}); run `make test-openclaw` to install and run this tier",
    )
    root.mkdir(parents=True, exist_ok=True)
    fake_process, fake_port = start_fake_openai(root / "fake.log", cold_start_s=3.0)
    sandbox = gw.Sandbox(root / "gateway", port=free_port(), llm_port=fake_port)
    sandbox.write_config(config)
    sandbox.start()
    try:
        wait_ready(sandbox)
    except BaseException:
        sandbox.stop()
        stop_process(fake_process)
        raise
    return RunningGateway(sandbox, RemoteFake(f"http://127.0.0.1:{fake_port}"), fake_process)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    running = start_gateway(tmp_path_factory.mktemp("openclaw"))
    try:
        yield running
    finally:
        running.sandbox.stop()
        stop_process(running.fake_process)
