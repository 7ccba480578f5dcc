"""The native plugin with the real CLI and Gateway: install, enable, configure, and a voice conversation.

In an isolated state dir: ``openclaw plugins install manifests/openclaw`` and ``openclaw plugins
enable elevenlabs-voice`` succeed; OpenClaw validates our generated configSchema; the started
Gateway runs our sidecar (``voice-channel serve``) as a plugin service, with the config given
under ``plugins.entries.elevenlabs-voice.config``; the sidecar answers a Speech Engine
conversation end to end (client → sidecar → this Gateway → fake model); and it does not outlive
the Gateway, even one killed with SIGKILL.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from openclaw_sandbox import RunningGateway, start_gateway, wait_ready

from processes import ROOT, free_port, port_open, stop_process, wait_until
from voice_channel.elevenlabs.client import SpeechEngineClient

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]  # with the module fixture's setup, on a loaded machine

PLUGIN_DIR = ROOT / "manifests" / "openclaw"
API_KEY = "sk_plugin_e2e_0123456789abcdef"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A Gateway sandbox where the CLI installed and enabled the plugin, configured, running."""
    running = start_gateway(tmp_path_factory.mktemp("openclaw-plugin"))
    sandbox = running.sandbox
    try:  # whatever fails or times out here (a loaded machine), the Gateway and the fake model are stopped
        sandbox.stop()  # install while stopped, as a user would ("Saved for the next Gateway start")
        outputs = {
            "install": sandbox.cli("plugins", "install", str(PLUGIN_DIR), "--force", "--accept-capabilities"),
            "enable": sandbox.cli("plugins", "enable", "elevenlabs-voice"),
        }
        port = free_port()
        plugin_config = {
            "elevenlabs": {"api_key": API_KEY},
            "server": {"port": port},
            "log_format": "json",
            "sidecar": {"command": str(Path(sys.executable).with_name("voice-channel")), "stopTimeoutMs": 5000},
        }
        sandbox.write_config({"plugins": {"entries": {"elevenlabs-voice": {"config": plugin_config}}}})
        outputs["validate"] = sandbox.cli("config", "validate")
        yield {"running": running, "outputs": outputs, "port": port}
    finally:
        sandbox.stop()
        stop_process(running.fake_process)


def test_cli_installs_and_enables_the_plugin(installed):
    out = installed["outputs"]
    assert out["install"].returncode == 0, out["install"].stderr + out["install"].stdout
    assert "Installed plugin: elevenlabs-voice" in out["install"].stdout + out["install"].stderr
    assert out["enable"].returncode == 0, out["enable"].stderr + out["enable"].stdout
    assert "elevenlabs-voice" in out["enable"].stdout + out["enable"].stderr
    sandbox = installed["running"].sandbox
    assert (sandbox.state / "extensions" / "elevenlabs-voice" / "index.mjs").exists()
    assert sandbox.config()["plugins"]["entries"]["elevenlabs-voice"]["enabled"] is True


def test_openclaw_accepts_the_generated_config_schema(installed):
    result = installed["outputs"]["validate"]
    assert result.returncode == 0, result.stdout + result.stderr


def test_openclaw_rejects_a_bad_plugin_config(installed):
    sandbox = installed["running"].sandbox
    good = sandbox.config_path.read_text()
    try:
        config = json.loads(good)
        config["plugins"]["entries"]["elevenlabs-voice"]["config"]["server"]["port"] = "eighty"
        sandbox.config_path.write_text(json.dumps(config))
        result = sandbox.cli("config", "validate")
    finally:
        sandbox.config_path.write_text(good)
    assert result.returncode != 0
    assert "elevenlabs-voice" in result.stdout + result.stderr and "port" in result.stdout + result.stderr


async def _health(port: int) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/healthz") as response:
        return await response.json()


def _sidecar_pid(sandbox: Any) -> int:
    return int(json.loads((sandbox.state / "plugins" / "elevenlabs-voice" / "sidecar.json").read_text())["pid"])


async def _exited(pid: int, timeout: float) -> None:
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    loop = asyncio.get_running_loop()
    gone = asyncio.Event()
    loop.add_reader(pidfd, gone.set)
    try:
        await asyncio.wait_for(gone.wait(), timeout)
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)


async def test_gateway_runs_the_sidecar_which_answers_a_conversation(installed):
    running: RunningGateway = installed["running"]
    sandbox, port = running.sandbox, installed["port"]
    sandbox.start()
    await asyncio.to_thread(wait_ready, sandbox)
    await asyncio.to_thread(
        wait_until, lambda: port_open(port), timeout=90, what="voice-channel sidecar", process=sandbox.process
    )
    assert await _health(port) == {"status": "ok"}
    settings_file = sandbox.state / "plugins" / "elevenlabs-voice" / "sidecar-config.yaml"
    assert settings_file.stat().st_mode & 0o777 == 0o600
    written = json.loads(settings_file.read_text())
    assert written["openclaw"]["gateway_url"] == sandbox.url and "sidecar" not in written
    async with SpeechEngineClient(f"ws://127.0.0.1:{port}/ws", api_key=API_KEY) as client:
        await client.say("hello through the plugin")
        reply = await client.reply(timeout=90)
    assert reply.text.endswith("Hello from the fake model.")
    await running.fake.wait_for(lambda calls: [c for c in calls if "hello through the plugin" in c["user"]])
    pid = _sidecar_pid(sandbox)
    await asyncio.to_thread(sandbox.stop)
    await _exited(pid, 15)


def _stop_gateway(sandbox: Any, how: str) -> None:
    if how == "gateway":
        sandbox.stop()  # SIGTERM to the Gateway only: its supervisor closes our stdin and sends SIGTERM
        return
    # SIGTERM to the Gateway's whole process group at once, as systemd (KillMode=control-group) or
    # Ctrl-C at a terminal do: the sidecar gets it while its stdin pipe is still open.
    process = sandbox.process
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(60)
    sandbox.process = None


@pytest.mark.parametrize("how", ["gateway", "process_group"])
async def test_gateway_stop_stops_the_sidecar_with_exit_code_0(installed, how):
    """Issue 11, item 6: stopped with a conversation open, the sidecar died with SIGABRT
    ("_enter_buffered_busy ... <stdin>") when SIGTERM reached it while its stdin pipe was open."""
    running: RunningGateway = installed["running"]
    sandbox, port = running.sandbox, installed["port"]
    await asyncio.to_thread(sandbox.stop)  # one left running by a failed test would answer instead
    process = sandbox.start()
    await asyncio.to_thread(
        wait_until, lambda: port_open(port), timeout=90, what="voice-channel sidecar", process=process
    )
    pid = _sidecar_pid(sandbox)
    async with SpeechEngineClient(f"ws://127.0.0.1:{port}/ws", api_key=API_KEY) as client:
        await client.say("stay on the line")
        await client.reply(timeout=90)
        stopping = asyncio.create_task(asyncio.to_thread(_stop_gateway, sandbox, how))
        try:
            assert await client.receive(timeout=30) == "closed"
            assert client.ws is not None and client.ws.close_code == 1001
        finally:
            await stopping
    await _exited(pid, 15)
    log = (sandbox.logs / "gateway.out").read_text(errors="replace").rsplit("===== start", 1)[-1]
    # "stopped" when the supervisor stopped it; "exited" when the signal reached the sidecar first.
    ends = re.findall(r"sidecar (?:stopped|exited) \(code (\S+), signal (\S+)\)", log)
    assert ends and set(ends) == {("0", "null")}, log[-3000:]
    assert "Fatal Python error" not in log


async def test_sidecar_does_not_outlive_a_killed_gateway(installed):
    running: RunningGateway = installed["running"]
    sandbox, port = running.sandbox, installed["port"]
    process = sandbox.start()
    await asyncio.to_thread(
        wait_until, lambda: port_open(port), timeout=90, what="voice-channel sidecar", process=process
    )
    pid = _sidecar_pid(sandbox)
    helpers = [child for child in _children(process.pid) if child != pid]
    process.send_signal(signal.SIGKILL)  # no chance for the Gateway to stop its services
    process.wait(10)
    sandbox.process = None
    try:
        await _exited(pid, 15)
    finally:
        # The Gateway's own helpers (spawn broker, sqlite worker: own sessions) are orphaned by a
        # SIGKILL: stop them, by pid, since this test started them.
        for helper in helpers:
            try:
                os.kill(helper, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found
