"""Hermes's own CLI on a fresh HERMES_HOME: the pip plugin is listed, enabled and shown as enabled; the directory
plugin in manifests/hermes/ installs with `hermes plugins install` from a git URL and loads through Hermes's loader."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from string import Template

import pytest
import yaml

from hermes_support import HERMETIC_ENV, PLATFORM, PLUGIN, hermes_cli
from processes import require
from voice_channel import __version__

ROOT = Path(__file__).resolve().parents[3]
DIRECTORY_PLUGIN = ROOT / "manifests" / "hermes" / PLUGIN


@pytest.fixture
def fresh_home(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "hermes-home"
    home.mkdir()
    return {**HERMETIC_ENV, "HERMES_HOME": str(home), "ELEVENLABS_API_KEY": "sk_test_cli"}


def listed(env: dict[str, str], *flags: str) -> dict[str, str]:
    plugins = json.loads(hermes_cli("plugins", "list", "--json", *flags, env=env).stdout)
    return next(p for p in plugins if p["name"] == PLUGIN)


def test_pip_plugin_is_listed_then_enabled(fresh_home):
    before = listed(fresh_home)
    assert before["status"] == "not enabled" and before["source"] == "entrypoint"
    assert before["version"] == __version__ and "ElevenLabs Speech Engine" in before["description"]
    done = hermes_cli("plugins", "enable", PLUGIN, "--no-allow-tool-override", env=fresh_home)
    assert f"Plugin {PLUGIN} enabled" in done.stdout
    assert listed(fresh_home)["status"] == "enabled"
    assert listed(fresh_home, "--enabled")["name"] == PLUGIN
    config = yaml.safe_load((Path(fresh_home["HERMES_HOME"]) / "config.yaml").read_text())
    assert PLUGIN in config["plugins"]["enabled"]
    plain = hermes_cli("plugins", "list", "--plain", env=fresh_home).stdout
    assert any(line.split()[:1] == ["enabled"] and PLUGIN in line for line in plain.splitlines()), plain


def test_directory_plugin_manifest_matches_the_package():
    manifest = yaml.safe_load((DIRECTORY_PLUGIN / "plugin.yaml").read_text())
    assert manifest["name"] == PLUGIN and manifest["version"] == __version__
    assert manifest["kind"] == "platform" and manifest["manifest_version"] == 1
    assert [env["name"] for env in manifest["requires_env"]] == ["ELEVENLABS_API_KEY"]


# Hides the pip entry point (same name: it would win over the directory plugin), then runs Hermes.
_WITHOUT_ENTRY_POINT = Template("""
import importlib.metadata as md, json, sys
_original = md.entry_points
def _ours(ep):
    return ep.group == "hermes_agent.plugins" and ep.name == "$plugin"
class _Filtered:
    def __init__(self, eps): self._eps = eps
    def select(self, **kw): return [ep for ep in self._eps.select(**kw) if not _ours(ep)]
def entry_points(**kw):
    eps = _original(**kw)
    return [ep for ep in eps if not _ours(ep)] if kw else _Filtered(eps)
md.entry_points = entry_points
if sys.argv[1] == "load":
    from hermes_cli.plugins import discover_plugins, get_plugin_manager
    from gateway.platform_registry import platform_registry
    discover_plugins(force=True)
    loaded = get_plugin_manager()._plugins["$plugin"]
    entry = platform_registry.get("$platform")
    print(json.dumps({"source": loaded.manifest.source, "enabled": loaded.enabled, "error": loaded.error,
                      "platform_plugin": entry.plugin_name if entry else None,
                      "hooks": sorted(loaded.hooks_registered)}))
else:
    from hermes_cli.main import main
    sys.argv = ["hermes", *sys.argv[1:]]
    sys.exit(main())
""").substitute(plugin=PLUGIN, platform=PLATFORM)


def hermes_without_entry_point(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_ENTRY_POINT, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_directory_plugin_installs_from_a_git_url_and_loads(fresh_home, tmp_path):
    require(shutil.which("git") is not None, "git is not installed: hermes plugins install clones with git")
    # A repository holding the directory plugin where this one does, as the README's command names it
    # (git, offline: file://).
    repo = tmp_path / "repo"
    subdir = f"manifests/hermes/{PLUGIN}"
    shutil.copytree(DIRECTORY_PLUGIN, repo / subdir, ignore=shutil.ignore_patterns("__pycache__"))
    git = ["git", "-C", str(repo), "-c", "user.email=ci@example.invalid", "-c", "user.name=ci"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "plugin"], check=True)

    done = hermes_cli("plugins", "install", f"file://{repo}#{subdir}", "--enable", env=fresh_home)
    assert f"Plugin {PLUGIN} enabled" in done.stdout
    installed = Path(fresh_home["HERMES_HOME"]) / "plugins" / PLUGIN
    assert (installed / "plugin.yaml").is_file() and (installed / "__init__.py").is_file()

    listing = json.loads(hermes_without_entry_point(fresh_home, "plugins", "list", "--json"))
    mine = next(p for p in listing if p["name"] == PLUGIN)
    assert mine["source"] == "user" and mine["status"] == "enabled" and mine["version"] == __version__
    loaded = json.loads(hermes_without_entry_point(fresh_home, "load").strip().splitlines()[-1])
    assert loaded == {
        "source": "user",
        "enabled": True,
        "error": None,
        "platform_plugin": PLUGIN,
        "hooks": [
            "api_request_error",
            "on_session_end",
            "post_api_request",
            "post_tool_call",
            "pre_llm_call",
            "pre_tool_call",
        ],
    }
