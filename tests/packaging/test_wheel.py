"""Installable as documented: ``python -m build`` makes an sdist and a wheel (built from the sdist), and the wheel
installs with each extra into a clean virtual environment, where the command line and what the extra adds work.

Slow (a few minutes: one venv per extra, packages from pip's cache); ``make test`` runs it as its own tier
(``make test-packaging``). Needs the built page (``make web``): a wheel without it would serve no page.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from processes import ROOT, require
from voice_channel.elevenlabs.page import bundle_missing

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

PAGE = ["app.js", "libsamplerate.worklet.js", "THIRD_PARTY_LICENSES.txt", "index.html", "page.css"]
MANIFESTS = [
    "openclaw.plugin.yaml",
    "openclaw/openclaw.plugin.json",
    "openclaw/package.json",
    "openclaw/index.mjs",
    "hermes/elevenlabs-voice/plugin.yaml",
    "hermes/elevenlabs-voice/__init__.py",
]


def run(*args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=cwd, env=env, timeout=900)
    assert result.returncode == 0, f"{' '.join(map(str, args))} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The sdist and the wheel, built as the README says (``python -m build``)."""
    require(not bundle_missing(), "the page is not built (make web)")
    out = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "build", "--outdir", out, ROOT)
    (wheel,) = out.glob("voice_channel-*.whl")
    (sdist,) = out.glob("voice_channel-*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


def test_the_wheel_ships_the_page_the_manifests_and_the_licenses(dist):
    with zipfile.ZipFile(dist["wheel"]) as wheel:
        names = set(wheel.namelist())
        metadata = wheel.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        entry_points = wheel.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    assert {f"voice_channel/static/{name}" for name in PAGE} <= names
    assert {f"voice_channel/manifests/{name}" for name in MANIFESTS} <= names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "License-Expression: MIT" in metadata
    for package in ("voice_channel", "voice_channel_hermes", "voice_channel_openai", "voice_channel_openclaw"):
        assert f"{package}/__init__.py" in names
    assert "elevenlabs-voice = voice_channel_hermes" in entry_points
    assert not any(name.startswith(("tests/", "web/", "bench/")) for name in names)


def test_the_sdist_holds_what_a_wheel_and_the_tests_are_made_from(dist):
    with tarfile.open(dist["sdist"]) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert {"LICENSE", "README.md", "Makefile", "pyproject.toml", "openclaw.plugin.yaml"} <= names
    assert {f"plugin/voice_channel/static/{name}" for name in PAGE} <= names
    assert {"web/package.json", "web/package-lock.json", "web/build.mjs", "tools/system-packages"} <= names


# What each extra adds, checked in its own clean venv (a Python snippet, or a command line, run there).
EXTRAS = {
    "": [],
    "openclaw": [["python", "-c", "from cryptography.hazmat.primitives.asymmetric import ed25519"]],
    "hermes": [["hermes", "plugins", "list", "--plain"]],
    "local": [
        [
            "python",
            "-c",
            "from voice_channel.local_engine.config import LocalEngineConfig\n"
            "from voice_channel.local_engine.local_mode import voice_unavailable\n"
            "from voice_channel.local_engine.speech import load_models\n"
            "assert voice_unavailable() is None, voice_unavailable()\n"
            "load_models(LocalEngineConfig(channel_url='ws://127.0.0.1:1/ws', api_key='k')).close()\n",
        ]
    ],
}


@pytest.mark.parametrize("extra", list(EXTRAS), ids=lambda extra: extra or "core")
def test_the_wheel_installs_with_each_extra_into_a_clean_venv(dist, extra, tmp_path):
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    bin_dir = venv / "bin"
    requirement = f"{dist['wheel']}[{extra}]" if extra else str(dist["wheel"])
    run(bin_dir / "python", "-m", "pip", "install", "--quiet", requirement)
    assert "Commands:" in run(bin_dir / "voice-channel", "--help")
    listing = json.loads(run(bin_dir / "voice-channel", "plugins", "--json"))
    assert {"echo", "demo", "openai", "openclaw", "hermes"} <= set(listing["runtimes"])
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path), "HERMES_HOME": str(tmp_path / "hermes")}
    for command in EXTRAS[extra]:
        out = run(bin_dir / command[0], *command[1:], cwd=tmp_path, env=env)
        if command[0] == "hermes":
            assert "elevenlabs-voice" in out  # Hermes finds the plugin through the wheel's entry point
