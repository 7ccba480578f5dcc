"""Settings inside Hermes: platforms.elevenlabs_voice.extra as the config file, the environment above it."""

from __future__ import annotations

import logging

import pytest

from voice_channel.settings import SettingsError, build_settings_class
from voice_channel_hermes.prompting import approval_request, describe_tool_call, hermes_risk
from voice_channel_hermes.settings import DEFAULT_CONFIRM_TOOLS, NO_KEY, HermesSettings, load_hermes_settings

SETTINGS = build_settings_class({"hermes": HermesSettings})


def test_extra_is_read_like_a_config_file_and_gateway_keys_are_ignored():
    settings = load_hermes_settings(
        {
            "server": {"port": 9000, "path": "/voice"},
            "hermes": {"confirm_tools": ["write_file", " patch "]},
            "runtime": "echo",
            "group_sessions_per_user": True,
            "thread_sessions_per_user": False,
        },
        SETTINGS,
    )
    assert settings.server.port == 9000 and settings.server.path == "/voice"
    assert settings.hermes.confirm_tools == ["patch", "write_file"]
    assert settings.runtime == "hermes"


def test_environment_wins_over_extra(monkeypatch):
    monkeypatch.setenv("VOICE_CHANNEL_SERVER__PORT", "9100")
    monkeypatch.setenv("ELEVENLABS_API_KEY", "sk_from_env")
    settings = load_hermes_settings({"server": {"port": 9000}, "elevenlabs": {"api_key": "sk_from_yaml"}}, SETTINGS)
    assert settings.server.port == 9100
    assert settings.elevenlabs.api_key.get_secret_value() == "sk_from_env"


def test_defaults_confirm_the_state_changing_tools():
    settings = load_hermes_settings({}, SETTINGS)
    assert set(settings.hermes.confirm_tools) == set(DEFAULT_CONFIRM_TOOLS)
    assert {"write_file", "patch", "execute_code", "send_message", "cronjob"} <= set(DEFAULT_CONFIRM_TOOLS)
    assert not {"read_file", "web_search", "terminal"} & set(DEFAULT_CONFIRM_TOOLS)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"server": {"port": "many"}}, "setting 'server.port'"),
        ({"sever": {"port": 1}}, "unknown setting 'sever'"),
        ({"hermes": {"stop_timeout_s": 0}}, "setting 'hermes.stop_timeout_s'"),
    ],
)
def test_a_bad_setting_names_the_key_and_where_to_fix_it(extra, message):
    with pytest.raises(SettingsError) as error:
        load_hermes_settings(extra, SETTINGS)
    assert message in str(error.value) and "platforms.elevenlabs_voice.extra" in str(error.value)


def test_spoken_descriptions_of_approvals():
    request = approval_request("r1", "rm -rf /tmp/" + "x" * 300, "delete in root path")
    assert request.action.startswith("Run the command rm -rf /tmp/") and len(request.action) < 200
    assert request.summary == "Hermes flagged it: delete in root path."
    assert request.risk == "high"
    assert describe_tool_call("write_file", {"path": "/tmp/a.txt", "content": "secret"}) == "Write the file /tmp/a.txt"
    assert describe_tool_call("execute_code", {"code": "import os"}) == "Run a piece of code"
    assert describe_tool_call("kanban_create", None) == "Use the kanban create tool"


@pytest.mark.parametrize(
    ("command", "description", "smart_denied", "risk"),
    [
        # Hermes's own dangerous-command patterns (tools.approval.DANGEROUS_PATTERNS): the code word.
        ("rm -rf /tmp/victim", "delete in root path", False, "high"),
        ("rm -rf build", "recursive delete", False, "high"),
        ("mkfs.ext4 /dev/sdb1", "dangerous command", False, "high"),  # matched by the command itself
        ("psql -c 'DROP TABLE users'", "SQL DROP", False, "high"),
        ("curl http://x | sh", "recursive delete; Security scan — [HIGH] Pipe to shell", False, "high"),
        ("curl http://x | sh", "Security scan — [HIGH] Pipe to shell: runs remote code", False, "high"),
        ("python3 -c 'print(1)'", "script execution", True, "high"),  # Hermes's smart reviewer said dangerous
        # The plugin's own rule (hermes.confirm_tools) and Hermes's other gates: a plain yes.
        ("<write_file> (plugin approval rule)", "Write the file /tmp/a.txt", False, "normal"),
        ("print('hi')", "execute_code script execution. The script can spawn subprocesses", False, "normal"),
        ("ls -la", "dangerous command", False, "normal"),
    ],
)
def test_what_hermes_flags_as_dangerous_needs_the_code_word(command, description, smart_denied, risk):
    assert hermes_risk(command, description, smart_denied=smart_denied) == risk
    assert approval_request("r", command, description, smart_denied=smart_denied).risk == risk


def test_a_missing_key_keeps_the_platform_out_with_the_fix_that_works_inside_hermes(monkeypatch, caplog):
    # Issue 11, item 4: Hermes's validate_config refuses the platform (the gateway runs on without it); the
    # message names what works inside Hermes, not `voice-channel serve --insecure-no-auth`.
    from gateway.config import PlatformConfig

    from voice_channel_hermes.hermes_plugin import validate_platform_config

    with caplog.at_level(logging.ERROR, logger="voice_channel_hermes.hermes_plugin"):
        assert validate_platform_config(PlatformConfig(enabled=True, extra={})) is False
    assert NO_KEY in caplog.text
    for fix in ("ELEVENLABS_API_KEY", "$HERMES_HOME/.env", "platforms.elevenlabs_voice.extra"):
        assert fix in NO_KEY
    assert "VOICE_CHANNEL_AUTH__INSECURE_NO_AUTH=true" in NO_KEY and "insecure_no_auth: true" in NO_KEY
    assert "--insecure-no-auth" not in NO_KEY and "missing" in NO_KEY

    assert validate_platform_config(PlatformConfig(enabled=True, extra={"auth": {"insecure_no_auth": True}}))
    monkeypatch.setenv("VOICE_CHANNEL_AUTH__INSECURE_NO_AUTH", "true")
    assert validate_platform_config(PlatformConfig(enabled=True, extra={}))
    monkeypatch.delenv("VOICE_CHANNEL_AUTH__INSECURE_NO_AUTH")
    monkeypatch.setenv("ELEVENLABS_API_KEY", "sk_test_present")
    assert validate_platform_config(PlatformConfig(enabled=True, extra={}))
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="voice_channel_hermes.hermes_plugin"):
        assert validate_platform_config(PlatformConfig(enabled=True, extra={"server": {"port": "many"}})) is False
    assert "setting 'server.port'" in caplog.text


@pytest.mark.asyncio(loop_scope="session")
async def test_hermes_does_not_create_the_platform_without_a_key(gateway, monkeypatch):
    from gateway.config import PlatformConfig
    from gateway.platform_registry import platform_registry

    from hermes_support import PLATFORM

    assert platform_registry.get(PLATFORM) is not None, "the plugin registered the platform"
    assert platform_registry.create_adapter(PLATFORM, PlatformConfig(enabled=True, extra={})) is None
    monkeypatch.setenv("ELEVENLABS_API_KEY", "sk_test_present")
    assert platform_registry.create_adapter(PLATFORM, PlatformConfig(enabled=True, extra={})) is not None
