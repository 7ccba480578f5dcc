"""``tools/install-system-packages``, which ``make test`` runs first: its decisions, with apt-get, sudo and id stubbed.

The stubs sit alone on ``PATH``, so every tool of ``tools/system-packages`` looks missing (or present, where a stub
for it is added); nothing is installed for real.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from processes import ROOT

SCRIPT = ROOT / "tools" / "install-system-packages"
PACKAGES = [
    line.split()[0]
    for line in (ROOT / "tools" / "system-packages").read_text().splitlines()
    if line.strip() and not line.startswith("#")
]


def stub(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


@pytest.fixture
def machine(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A PATH of stubs: ``run(uid=…, sudo=…, apt=…, present=…)`` runs the script on it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "apt-calls"
    for tool in ("bash", "env"):
        (bin_dir / tool).symlink_to(subprocess.run(["which", tool], capture_output=True, text=True).stdout.strip())

    def run(*args: str, uid: int = 0, sudo: str | None = None, apt: bool = True, present: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
        stub(bin_dir, "id", f"echo {uid}")
        for name in ("sudo", "apt-get"):
            (bin_dir / name).unlink(missing_ok=True)
        if apt:
            stub(bin_dir, "apt-get", f'echo "apt-get $*" >> {calls}')
        if sudo == "passwordless":
            stub(bin_dir, "sudo", '[ "$1" = -n ] && shift; echo "sudo:" >> ' + str(calls) + '; exec "$@"')
            stub(bin_dir, "true", "exit 0")
        elif sudo == "asks":
            stub(bin_dir, "sudo", "echo 'sudo: a password is required' >&2; exit 1")
        for tool in present:
            stub(bin_dir, tool, "exit 0")
        result = subprocess.run(
            ["/bin/bash", str(SCRIPT), *args],
            env={"PATH": str(bin_dir), "HOME": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=30,
        )
        done = calls.read_text().splitlines() if calls.exists() else []
        calls.unlink(missing_ok=True)
        return result, done

    return run


def test_the_list_names_what_the_tiers_need():
    assert {"chromium", "espeak-ng", "git", "nodejs", "npm", "python3-venv"} <= set(PACKAGES)


def _checked_tool(line: str) -> str:
    """The program a line's check looks for: ``command -v X`` names it; otherwise the check runs it."""
    check = line.split("#")[0].split()[1:]
    return check[2] if check[:2] == ["command", "-v"] else check[0]


#: One program per line of tools/system-packages, stubbed as present where a test wants nothing missing.
TOOLS = tuple(
    _checked_tool(line)
    for line in (ROOT / "tools" / "system-packages").read_text().splitlines()
    if line.strip() and not line.startswith("#")
)


def test_nothing_missing_means_nothing_done(machine):
    result, calls = machine(present=TOOLS)
    assert (result.returncode, result.stdout, result.stderr, calls) == (0, "", "", [])


def test_root_installs_every_missing_package_with_apt_get(machine):
    result, calls = machine(uid=0, present=("git",))
    assert result.returncode == 0, result.stderr
    wanted = [p for p in PACKAGES if p != "git"]
    assert calls == ["apt-get update -qq", "apt-get install -y -qq --no-install-recommends " + " ".join(wanted)]


def test_passwordless_sudo_installs_through_sudo(machine):
    result, calls = machine(uid=1000, sudo="passwordless")
    assert result.returncode == 0, result.stderr
    assert calls[0] == "sudo:"  # `sudo -n true`, the check
    assert calls[-1] == "apt-get install -y -qq --no-install-recommends " + " ".join(PACKAGES)


@pytest.mark.parametrize("sudo", [None, "asks"])
def test_without_root_it_fails_with_the_exact_install_command(machine, sudo):
    result, calls = machine(uid=1000, sudo=sudo)
    assert result.returncode == 1
    assert calls == [] or calls == ["sudo:"]
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    command = "sudo apt-get install -y --no-install-recommends " + " ".join(PACKAGES)
    assert lines[0].endswith(f"install them as root: sudo apt-get update && {command}")


def test_without_apt_get_it_fails_naming_the_packages(machine):
    result, _ = machine(apt=False)
    assert (
        result.returncode == 1 and " ".join(PACKAGES) in result.stderr and "apt-get is not available" in result.stderr
    )


def test_dry_run_says_what_it_would_do_and_changes_nothing(machine):
    result, calls = machine("--dry-run", uid=1000)
    assert result.returncode == 0 and calls == []
    assert result.stdout.strip() == (
        f"missing: {' '.join(PACKAGES)}; would run: apt-get update && "
        f"apt-get install -y --no-install-recommends {' '.join(PACKAGES)}"
    )


def test_the_script_is_executable():
    assert os.access(SCRIPT, os.X_OK)
