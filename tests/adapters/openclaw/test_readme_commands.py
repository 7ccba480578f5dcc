"""The README's "Use with OpenClaw" install commands, run exactly as written, with no terminal (issue 11, item 7).

The command lines are read from the README's code block, so a change there is what gets tested.
They run through ``bash -c`` from the repository root, with stdin on /dev/null in a new session
(no controlling terminal), like a provisioning script: first the real ``npm install --global``
(into a temporary prefix, from npm's cache where it can), then the ``openclaw`` it installed,
against an isolated state dir. The plugin install is run once more under a pseudo-terminal
(``script``), where a prompt would get end-of-file and cancel.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openclaw_sandbox import OPENCLAW_VERSION, Sandbox, is_installed, node_dir

from processes import ROOT, require

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

README = ROOT / "README.md"


def readme_install_commands() -> list[str]:
    """The command lines of the bash block in "Use with OpenClaw" that installs the plugin."""
    section = README.read_text().split("\n## Use with OpenClaw\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.DOTALL)
    (block,) = [b for b in blocks if "openclaw plugins install" in b]
    lines = [re.sub(r"\s+#.*$", "", line).strip() for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def test_the_readme_installs_the_tested_openclaw_version():
    commands = readme_install_commands()
    assert commands[0].startswith("npm install"), commands
    assert f"openclaw@{OPENCLAW_VERSION} " in commands[0] + " "
    assert all(c.startswith("openclaw ") for c in commands[1:]), commands


def _npm_shim(bin_dir: Path) -> None:
    """An ``npm`` on PATH (the Node wheel's own npm launcher is broken; see openclaw_sandbox)."""
    npm_cli = node_dir() / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js"
    shim = bin_dir / "npm"
    shim.write_text(f'#!/bin/sh\nexec "{node_dir() / "bin" / "node"}" "{npm_cli}" "$@"\n')
    shim.chmod(0o755)


@pytest.fixture(scope="module")
def shell(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Runs a README line as a user's script would, in an isolated OpenClaw home and npm prefix."""
    require(is_installed(), "Node 24 and openclaw are not installed; run `make test-openclaw`")
    root = tmp_path_factory.mktemp("openclaw-readme")
    sandbox = Sandbox(root / "gateway", port=1, llm_port=2)  # no Gateway runs: the CLI only
    sandbox.write_config()
    prefix, shims = root / "npm-global", root / "shims"
    shims.mkdir()
    _npm_shim(shims)
    env = sandbox.env()
    env.update(
        {
            "PATH": os.pathsep.join([str(prefix / "bin"), str(shims), env["PATH"]]),
            "npm_config_prefix": str(prefix),  # where --global goes
            "npm_config_cache": str(Path.home() / ".npm"),  # the user's cache (HOME is the sandbox's)
            "npm_config_prefer_offline": "true",
            "npm_config_update_notifier": "false",
            "npm_config_audit": "false",
            "npm_config_fund": "false",
        }
    )

    def run(line: str, *, terminal: bool = False) -> subprocess.CompletedProcess[str]:
        argv = ["script", "-qec", line, "/dev/null"] if terminal else ["bash", "-c", line]
        return subprocess.run(
            argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=600,
            start_new_session=True,  # no controlling terminal either
        )

    run.sandbox = sandbox  # type: ignore[attr-defined]
    run.prefix = prefix  # type: ignore[attr-defined]
    try:
        yield run
    finally:
        shutil.rmtree(prefix, ignore_errors=True)  # ~650 MB


def test_readme_commands_work_as_pasted_without_a_terminal(shell):
    npm_line, *openclaw_lines = readme_install_commands()
    installed = shell(npm_line)
    output = installed.stdout + installed.stderr
    assert installed.returncode == 0, output[-3000:]
    assert "not yet covered by allowScripts" not in output, "every install script of openclaw is allowed by name"
    assert (shell.prefix / "bin" / "openclaw").exists()
    version = shell("openclaw --version")
    assert OPENCLAW_VERSION in version.stdout, version.stdout + version.stderr
    for line in openclaw_lines:
        result = shell(line)
        output = result.stdout + result.stderr
        assert result.returncode == 0, f"{line}\n{output[-3000:]}"
        assert "cancelled" not in output.lower(), output
    sandbox = shell.sandbox
    assert (sandbox.state / "extensions" / "elevenlabs-voice" / "index.mjs").exists()
    assert sandbox.config()["plugins"]["entries"]["elevenlabs-voice"]["enabled"] is True
    # At a terminal the same line asks nothing either (a prompt would read EOF and cancel); it
    # replaces the plugin installed above, as an upgrade would.
    (install_line,) = [c for c in openclaw_lines if c.startswith("openclaw plugins install")]
    again = shell(install_line, terminal=True)
    assert again.returncode == 0, again.stdout[-3000:]
    assert "Installed plugin: elevenlabs-voice" in again.stdout
