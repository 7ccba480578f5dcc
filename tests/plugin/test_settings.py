"""Settings: sources and their precedence, readable errors, the plugin-section mechanism."""

from __future__ import annotations

import re

import pytest
from pydantic import BaseModel, Field

from voice_channel.settings import Settings, SettingsError, build_settings_class, load_settings


def test_defaults():
    settings = load_settings()
    assert settings.runtime == "echo"
    assert settings.server.path == "/ws" and settings.server.heartbeat_s == 20
    assert settings.server.max_frame_bytes == 1024 * 1024
    assert settings.confirmations.timeout_s == 30
    assert settings.echo.delay_ms == 0
    assert settings.elevenlabs.api_key is None


def test_env_nested_and_elevenlabs_names(monkeypatch):
    monkeypatch.setenv("VOICE_CHANNEL_ECHO__DELAY_MS", "25")
    monkeypatch.setenv("VOICE_CHANNEL_CONFIRMATIONS__TIMEOUT_S", "12.5")
    monkeypatch.setenv("VOICE_CHANNEL_LOG_LEVEL", "debug")
    monkeypatch.setenv("ELEVENLABS_API_KEY", "sk_from_env")
    monkeypatch.setenv("ELEVENLABS_SPEECH_ENGINE_ID", "seng_123")
    settings = load_settings()
    assert settings.echo.delay_ms == 25
    assert settings.confirmations.timeout_s == 12.5
    assert settings.log_level == "debug"
    assert settings.elevenlabs.api_key.get_secret_value() == "sk_from_env"
    assert settings.elevenlabs.speech_engine_id == "seng_123"


def test_precedence_flags_over_env_over_file(tmp_path, monkeypatch):
    config = tmp_path / "voice.yaml"
    config.write_text("runtime: echo\nserver:\n  port: 9001\n  host: 0.0.0.0\necho:\n  delay_ms: 5\n")
    monkeypatch.setenv("VOICE_CHANNEL_SERVER__PORT", "9002")
    settings = load_settings(config_file=config, overrides={"echo": {"delay_ms": 7}})
    assert settings.server.port == 9002  # env beats file
    assert settings.server.host == "0.0.0.0"  # file beats default
    assert settings.echo.delay_ms == 7  # flag beats everything


def test_voice_channel_key_beats_the_elevenlabs_name(monkeypatch):
    monkeypatch.setenv("ELEVENLABS_API_KEY", "sk_generic")
    monkeypatch.setenv("VOICE_CHANNEL_ELEVENLABS__API_KEY", "sk_specific")
    assert load_settings().elevenlabs.api_key.get_secret_value() == "sk_specific"


def test_toml_file(tmp_path):
    config = tmp_path / "voice.toml"
    config.write_text('[turn]\nfiller_text = "Hold on."\n')
    assert load_settings(config_file=config).turn.filler_text == "Hold on."


@pytest.mark.parametrize(
    ("env", "value", "expected"),
    [
        (
            "VOICE_CHANNEL_SERVER__PORT",
            "70000",
            "setting 'server.port' (env VOICE_CHANNEL_SERVER__PORT): "
            "Input should be less than or equal to 65535 (got '70000')",
        ),
        (
            "VOICE_CHANNEL_SERVER__PATH",
            "ws",
            "setting 'server.path' (env VOICE_CHANNEL_SERVER__PATH): Value error, must start with '/'",
        ),
        (
            "VOICE_CHANNEL_LOG_LEVEL",
            "loud",
            "setting 'log_level' (env VOICE_CHANNEL_LOG_LEVEL): Input should be 'debug', 'info', 'warning' or 'error'",
        ),
        ("VOICE_CHANNEL_TURN__FIRST_TEXT_DEADLINE_S", "20", "setting 'turn.first_text_deadline_s'"),
    ],
)
def test_bad_setting_names_the_key_and_what_is_allowed(monkeypatch, env, value, expected):
    monkeypatch.setenv(env, value)
    with pytest.raises(SettingsError) as excinfo:
        load_settings()
    assert expected in str(excinfo.value)


def test_unknown_key_in_file_is_named(tmp_path):
    config = tmp_path / "voice.yaml"
    config.write_text("serverr:\n  port: 1\n")
    with pytest.raises(SettingsError, match="unknown setting 'serverr'"):
        load_settings(config_file=config)


def test_secret_values_never_appear_in_errors_or_repr(monkeypatch):
    monkeypatch.setenv("VOICE_CHANNEL_ELEVENLABS__API_KEY", "sk_very_secret_value")
    settings = load_settings()
    assert "sk_very_secret_value" not in repr(settings) and "sk_very_secret_value" not in str(settings.model_dump())
    monkeypatch.setenv("VOICE_CHANNEL_AUTH__HEADER_SECRET", "")
    monkeypatch.setenv("VOICE_CHANNEL_SERVER__PORT", "x")
    with pytest.raises(SettingsError) as excinfo:
        load_settings()
    assert "sk_very_secret_value" not in str(excinfo.value)


def test_missing_or_unsupported_config_file(tmp_path):
    with pytest.raises(SettingsError, match="not found"):
        load_settings(config_file=tmp_path / "nope.yaml")
    other = tmp_path / "voice.ini"
    other.write_text("x")
    with pytest.raises(SettingsError, match=r"\.yaml, \.yml or \.toml"):
        load_settings(config_file=other)


def test_malformed_yaml_is_a_clear_error(tmp_path):
    config = tmp_path / "voice.yaml"
    config.write_text("server: [unclosed\n")
    with pytest.raises(SettingsError, match="cannot read config file"):
        load_settings(config_file=config)


class _Extra(BaseModel):
    """Extra runtime settings."""

    base_url: str = Field("http://localhost", description="Where it is.")


def test_plugin_sections_join_the_model(monkeypatch):
    cls = build_settings_class({"extra": _Extra})
    monkeypatch.setenv("VOICE_CHANNEL_EXTRA__BASE_URL", "http://other")
    settings = load_settings(settings_cls=cls)
    assert settings.extra.base_url == "http://other"
    assert issubclass(cls, Settings)
    with pytest.raises(SettingsError, match="clash"):
        build_settings_class({"server": _Extra})


# --- browser side and ElevenLabs resources ----------------------------------------------------------


def test_public_url_gives_the_ws_url_and_the_origin():
    server = load_settings(overrides={"server": {"public_url": "https://Voice.Example.com/"}}).server
    assert server.public_url == "https://voice.example.com"
    assert server.public_ws_url == "wss://voice.example.com/ws"
    assert server.public_origin == "https://voice.example.com"
    mounted = load_settings(overrides={"server": {"public_url": "http://h:8080/voice", "path": "/speech"}}).server
    assert (mounted.public_ws_url, mounted.public_origin) == ("ws://h:8080/voice/speech", "http://h:8080")
    assert load_settings().server.public_ws_url is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"server": {"public_url": "voice.example.com"}}, "server.public_url"),
        ({"server": {"public_url": "https://h/?x=1"}}, "query"),
        ({"elevenlabs": {"base_url": "https://api.elevenlabs.io/v1"}}, "leave out /v1"),
        ({"elevenlabs": {"base_url": "ftp://api.elevenlabs.io"}}, "http:// or https://"),
        ({"elevenlabs": {"livekit_url": "https://livekit.example.com"}}, "ws:// or wss://"),
        ({"elevenlabs": {"speech_engine_id": "seng_a/../../user"}}, "seng_"),
        ({"token": {"allowed_origins": ["https://h/page"]}}, "not an origin"),
        ({"token": {"rate_per_minute": 0}}, "token.rate_per_minute"),
        ({"token": {"transport": "carrier-pigeon"}}, "token.transport"),
    ],
)
def test_bad_browser_and_elevenlabs_settings_name_the_key(overrides, message):
    with pytest.raises(SettingsError, match=re.escape(message)):
        load_settings(overrides=overrides)


def test_origins_are_normalised_and_secrets_stay_hidden(monkeypatch):
    monkeypatch.setenv("VOICE_CHANNEL_TOKEN__ALLOWED_ORIGINS", '["HTTPS://A.example.com:443", "http://b:8080/"]')
    monkeypatch.setenv("VOICE_CHANNEL_TOKEN__BEARER_SECRET", "shh-123456")
    settings = load_settings()
    assert settings.token.allowed_origins == ["https://a.example.com", "http://b:8080"]
    assert "shh-123456" not in repr(settings) and settings.token.bearer_secret.get_secret_value() == "shh-123456"
    with pytest.raises(SettingsError) as error:
        load_settings(overrides={"token": {"bearer_secret": 12345678}})
    assert "12345678" not in str(error.value)


def test_config_data_sits_where_a_file_would(monkeypatch):
    monkeypatch.setenv("VOICE_CHANNEL_SERVER__PORT", "9002")
    settings = load_settings(config_data={"server": {"port": 9001, "host": "0.0.0.0"}}, overrides={"runtime": "demo"})
    assert (settings.server.port, settings.server.host, settings.runtime) == (9002, "0.0.0.0", "demo")
    with pytest.raises(SettingsError, match="unknown setting 'nope'"):
        load_settings(config_data={"nope": 1})


def test_a_bad_value_in_the_config_file_is_named_by_its_file_key(tmp_path, monkeypatch):
    config = tmp_path / "voice.yaml"
    config.write_text("server:\n  port: lots\n")
    with pytest.raises(SettingsError) as excinfo:
        load_settings(config_file=config)
    message = str(excinfo.value)
    assert f"setting 'server.port' in config file {config} (env VOICE_CHANNEL_SERVER__PORT overrides it):" in message
    assert "(got 'lots')" in message
    # The same bad value from the environment is reported under the variable that carried it.
    monkeypatch.setenv("VOICE_CHANNEL_SERVER__PORT", "many")
    with pytest.raises(SettingsError) as excinfo:
        load_settings(config_file=config)
    assert "setting 'server.port' (env VOICE_CHANNEL_SERVER__PORT):" in str(excinfo.value)
    assert "in config file" not in str(excinfo.value)


def test_bad_values_name_the_source_they_came_from(tmp_path, monkeypatch):
    with pytest.raises(SettingsError, match=re.escape("setting 'server.port' (command line):")):
        load_settings(overrides={"server": {"port": -1}})
    with pytest.raises(SettingsError, match=re.escape("setting 'server.port' in the configuration (env VOICE_CHANNEL")):
        load_settings(config_data={"server": {"port": "x"}})
    monkeypatch.setenv("ELEVENLABS_SPEECH_ENGINE_ID", "nope")
    with pytest.raises(SettingsError, match=re.escape("setting 'elevenlabs.speech_engine_id' (env ELEVENLABS_SPEECH")):
        load_settings()
    monkeypatch.delenv("ELEVENLABS_SPEECH_ENGINE_ID")
    monkeypatch.setenv("VOICE_CHANNEL_SERVER", '{"port": "x"}')  # a whole section as JSON
    with pytest.raises(SettingsError, match=re.escape("setting 'server.port' (env VOICE_CHANNEL_SERVER):")):
        load_settings()


# --- config the loader cannot take as it is (review, 2026-12-06) ----------------------------------------------


def config_file_error(tmp_path, text: str) -> str:  # type: ignore[no-untyped-def]
    """The message of the settings error that loading a config file holding ``text`` raises."""
    config = tmp_path / "voice.yaml"
    config.write_text(text)
    with pytest.raises(SettingsError) as excinfo:
        load_settings(config_file=config)
    return str(excinfo.value)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("1: 2\n", "1"),  # a number as a top-level key: AttributeError traceback from pydantic-settings
        ("~: x\n", "None"),  # null as a key: the same
        ("- server\n- port\n", "list"),  # "dictionary update sequence element #0 has length 1; 2 is required"
        ("just some text\n", "str"),  # the same cryptic line
    ],
)
def test_a_config_file_that_is_not_a_mapping_is_one_clear_error(tmp_path, text, shown):
    message = config_file_error(tmp_path, text)
    assert str(tmp_path / "voice.yaml") in message and "top level" in message and shown in message
    assert "dictionary update sequence" not in message


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("VOICE_CHANNEL_TOKEN__ALLOWED_ORIGINS", "https://voice.example.com"),
        ("VOICE_CHANNEL_METRICS__ALLOWED_NETWORKS", "10.0.0.0/8"),
        ("VOICE_CHANNEL_SERVER", "{port: 1}"),
    ],
)
def test_an_environment_list_that_is_not_json_names_the_variable_and_the_fix(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as excinfo:
        load_settings()
    message = str(excinfo.value)
    # Was: "cannot read config file None: error parsing value for field "token" from source "EnvSettingsSource""
    assert "config file None" not in message
    assert name in message and "JSON" in message


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("redis: redis://:hunter2-pass@redis:6379/0\n", "hunter2-pass"),
        ("elevenlabs: sk_live_abcdef123456\n", "sk_live_abcdef123456"),
        ("auth: my-shared-secret-value\n", "my-shared-secret-value"),
    ],
)
def test_a_section_given_as_a_single_value_is_not_echoed(tmp_path, text, secret):
    message = config_file_error(tmp_path, text)
    assert "setting '" in message  # still names the key
    assert secret not in message


@pytest.mark.parametrize(
    "text",
    [
        'elevenlabs:\n  api_key: "sk_live_hunter2\n',  # the closing quote forgotten
        "elevenlabs:\n  api_key: sk_live_hunter2: x\n",  # a colon too many
        "auth:\n  header_secret: hunter2\t@\n",  # a character YAML refuses
    ],
)
def test_a_yaml_syntax_error_names_line_and_column_without_echoing_the_line(tmp_path, text):
    # Was: PyYAML's message quotes the offending line, secret and all, with a caret under it.
    message = config_file_error(tmp_path, text)
    assert "hunter2" not in message
    assert str(tmp_path / "voice.yaml") in message and "line 2" in message
    assert "<unicode string>" not in message


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"server": {"public_url": "https://voice:hunter2@voice.example.com/?x"}}, "server.public_url"),
        ({"elevenlabs": {"base_url": "https://me:hunter2@proxy.example.com/v1"}}, "elevenlabs.base_url"),
        ({"token": {"allowed_origins": ["https://me:hunter2@example.com/page"]}}, "token.allowed_origins"),
    ],
)
def test_a_refused_url_is_not_echoed_with_its_password(data, key):
    # Was: "(got 'https://voice:hunter2@voice.example.com/?x')": credentials in a URL are a secret too.
    with pytest.raises(SettingsError) as excinfo:
        load_settings(config_data=data)
    message = str(excinfo.value)
    assert f"setting '{key}'" in message
    assert "hunter2" not in message


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("server:\n  port: 9000\nruntime: echo\nserver:\n  host: 0.0.0.0\n", "server"),
        ("server:\n  port: 9000\n  port: 9001\n", "port"),
    ],
)
def test_a_key_twice_in_a_yaml_file_is_refused_by_name(tmp_path, text, key):
    # Was: the last one silently won; a second `server:` section dropped the first's port without a word.
    # (TOML refuses it already.)
    message = config_file_error(tmp_path, text)
    assert f"'{key}'" in message and "twice" in message and "line" in message


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("voice.yaml", "server: " + "[" * 20_000 + "]" * 20_000 + "\n"),
        ("voice.yaml", "server: " + "{a: " * 5_000 + "1" + "}" * 5_000 + "\n"),
        ("voice.toml", "x = " + "[" * 20_000 + "]" * 20_000 + "\n"),
    ],
)
def test_a_config_file_nested_too_deeply_is_one_clear_error(tmp_path, name, text):
    # Was: a RecursionError traceback from the YAML or TOML parser.
    config = tmp_path / name
    config.write_text(text)
    with pytest.raises(SettingsError, match=f"cannot read config file {re.escape(str(config))}: .*nested too deeply"):
        load_settings(config_file=config)


def test_an_environment_section_nested_too_deeply_names_the_variable(monkeypatch):
    # Was: a RecursionError traceback from the JSON decoder.
    monkeypatch.setenv("VOICE_CHANNEL_SERVER", "[" * 20_000 + "]" * 20_000)
    with pytest.raises(SettingsError, match=r"VOICE_CHANNEL_SERVER.*nested too deeply"):
        load_settings()


@pytest.mark.parametrize("host", ["", "  "])
def test_an_empty_host_is_refused_not_taken_for_every_interface(host):
    # Was: accepted, and aiohttp listens on every interface (0.0.0.0 and ::) for an empty host, e.g. from
    # `serve --host "$HOST"` with HOST unset: the opposite of the default 127.0.0.1.
    with pytest.raises(SettingsError, match=r"setting 'server\.host' \(command line\): .*0\.0\.0\.0"):
        load_settings(overrides={"server": {"host": host}})


def test_a_secret_with_a_trailing_line_break_is_taken_without_it(monkeypatch):
    # Was: kept as given, e.g. from a Kubernetes secret made from a file that ends with a newline: HTTP drops the
    # whitespace around a header value, so the handshake header secret and the bearer secrets never matched
    # (every conversation refused), and ElevenLabs API calls failed with "Cannot reach ElevenLabs".
    from voice_channel.channel.auth import bearer_credential, secret_matches

    monkeypatch.setenv("VOICE_CHANNEL_AUTH__HEADER_SECRET", "header-secret-value\n")
    monkeypatch.setenv("VOICE_CHANNEL_TOKEN__BEARER_SECRET", " bearer-secret-value\r\n")
    monkeypatch.setenv("ELEVENLABS_API_KEY", "sk_abcdef\n")
    settings = load_settings()
    assert settings.auth.header_secret is not None and settings.token.bearer_secret is not None
    assert secret_matches("header-secret-value", settings.auth.header_secret)
    sent = bearer_credential({"Authorization": "Bearer bearer-secret-value"})
    assert secret_matches(sent, settings.token.bearer_secret)
    assert settings.elevenlabs.api_key is not None and settings.elevenlabs.api_key.get_secret_value() == "sk_abcdef"


def test_a_runtimes_fallback_secret_from_the_environment_is_taken_without_whitespace_around_it(monkeypatch):
    # The secret settings are trimmed; the runtimes' documented fallbacks (OPENCLAW_GATEWAY_TOKEN...) were not.
    from voice_channel.settings import env_secret

    monkeypatch.setenv("SOME_GATEWAY_TOKEN", "gateway-token\n")
    assert env_secret("SOME_GATEWAY_TOKEN") == "gateway-token"
