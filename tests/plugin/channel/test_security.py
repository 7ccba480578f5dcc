"""Issue 10's security defects, each reproduced: blank secrets, undecodable secret headers, the token
endpoint's default origins, the insecure-mode warning and the operator-only ``/status``."""

from __future__ import annotations

import json

import aiohttp
import pytest
from pydantic import BaseModel
from structlog.testing import capture_logs

from cli_process import run, serve
from raw_http import raw_request, upgrade_request
from support import ElevenLabsStandin, get_token, handshake_status
from voice_channel.channel.auth import JWT_HEADER
from voice_channel.elevenlabs.client import sign_speech_engine_jwt
from voice_channel.serving.keys import STATE
from voice_channel.settings import SettingsError, build_settings_class, load_settings
from voice_channel_openai.settings import OpenAISettings
from voice_channel_openclaw.settings import OpenClawSettings

# --- 7. a blank secret is no secret -----------------------------------------------------------------------

SECRET_SETTINGS = [
    ("elevenlabs.api_key", "VOICE_CHANNEL_ELEVENLABS__API_KEY"),
    ("auth.header_secret", "VOICE_CHANNEL_AUTH__HEADER_SECRET"),
    ("token.bearer_secret", "VOICE_CHANNEL_TOKEN__BEARER_SECRET"),
    ("status.bearer_secret", "VOICE_CHANNEL_STATUS__BEARER_SECRET"),
    ("openai.api_key", "VOICE_CHANNEL_OPENAI__API_KEY"),
    ("openclaw.token", "VOICE_CHANNEL_OPENCLAW__TOKEN"),
    ("openclaw.password", "VOICE_CHANNEL_OPENCLAW__PASSWORD"),
    ("redis.url", "VOICE_CHANNEL_REDIS__URL"),
]


def _with_adapters() -> type:
    return build_settings_class({"openai": OpenAISettings, "openclaw": OpenClawSettings})


def _every_secret_field(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Every setting whose type is a secret, found by walking the model (so a new one cannot be missed)."""
    found = set()
    for name, field in model.model_fields.items():
        annotation = field.annotation
        sub = next((a for a in getattr(annotation, "__args__", (annotation,)) if isinstance(a, type)), None)
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            found |= _every_secret_field(sub, f"{prefix}{name}.")
        elif "SecretStr" in repr(annotation):
            found.add(prefix + name)
    return found


def test_every_secret_setting_is_covered_by_the_blank_rule():
    assert _every_secret_field(_with_adapters()) == {key for key, _env in SECRET_SETTINGS}


@pytest.mark.parametrize(("key", "env"), SECRET_SETTINGS)
@pytest.mark.parametrize("blank", ["", "   ", "\t\n", "\u00a0"])
def test_a_blank_secret_in_a_file_is_refused_naming_key_env_and_fix(tmp_path, key, env, blank):
    section, name = key.split(".")
    config = tmp_path / "voice.yaml"
    config.write_text(json.dumps({section: {name: blank}}))  # JSON is YAML
    with pytest.raises(SettingsError) as excinfo:
        load_settings(config_file=config, settings_cls=_with_adapters())
    message = str(excinfo.value)
    assert f"setting '{key}'" in message and env in message
    assert "empty or only whitespace" in message and "set the real value or remove the setting" in message


@pytest.mark.parametrize(("key", "env"), [(k, e) for k, e in SECRET_SETTINGS])
def test_a_whitespace_secret_in_the_environment_is_refused(monkeypatch, key, env):
    monkeypatch.setenv(env, "   ")
    with pytest.raises(SettingsError, match=rf"setting '{key}' \(env {env}"):
        load_settings(settings_cls=_with_adapters())


def test_a_whitespace_elevenlabs_api_key_names_both_variables(monkeypatch):
    monkeypatch.setenv("ELEVENLABS_API_KEY", "   ")
    with pytest.raises(SettingsError) as excinfo:
        load_settings()
    assert "setting 'elevenlabs.api_key'" in str(excinfo.value) and "ELEVENLABS_API_KEY" in str(excinfo.value)


def test_a_secret_keeps_its_value_and_an_empty_variable_still_means_unset(monkeypatch):
    monkeypatch.setenv("ELEVENLABS_API_KEY", "sk_real")
    monkeypatch.setenv("VOICE_CHANNEL_AUTH__HEADER_SECRET", "")  # an empty variable is an unset one
    settings = load_settings()
    assert settings.elevenlabs.api_key.get_secret_value() == "sk_real"
    assert settings.auth.header_secret is None


@pytest.mark.parametrize("name", ["OPENCLAW_GATEWAY_TOKEN", "OPENCLAW_GATEWAY_PASSWORD"])
async def test_the_openclaw_environment_fallbacks_follow_the_same_rule(monkeypatch, tmp_path, name):
    from voice_channel_openclaw.runtime import OpenClawRuntime

    monkeypatch.setenv(name, "  ")
    settings = _with_adapters()(openclaw={"device_key_path": str(tmp_path / "device.json")})
    with pytest.raises(SettingsError, match=rf"environment variable {name} is empty or only whitespace"):
        await OpenClawRuntime(settings).start()


async def test_serve_with_a_blank_key_refuses_to_start():
    for extra in ({"ELEVENLABS_API_KEY": "   "}, {"VOICE_CHANNEL_ELEVENLABS__API_KEY": " \t"}):
        code, _out, err = await run("serve", "--port", "0", **extra)
        assert code == 2, err
        assert "setting 'elevenlabs.api_key'" in err and "empty or only whitespace" in err
        assert "Traceback" not in err


async def test_a_jwt_signed_with_a_blank_key_opens_nothing(start_channel, api_key):
    """Second line of defence: settings built around the validator (e.g. by a host) must not verify with ''."""
    channel = await start_channel()
    channel.settings.elevenlabs.api_key = type(channel.settings.elevenlabs.api_key)("  ")
    # Signed as ElevenLabs would with an empty key: HS256 over sha256("").
    assert await handshake_status(channel.url, {JWT_HEADER: sign_speech_engine_jwt("")}) == 401


# --- 10. undecodable bytes in the shared-secret header --------------------------------------------------


@pytest.mark.parametrize("value", [b"\xff\xfe-secret", b"caf\xc3", b"s3cret-\xe9t\xe9"])
async def test_undecodable_shared_secret_header_is_401_and_one_clean_line(start_channel, api_key, value):
    channel = await start_channel(auth={"header_secret": "s3cret-\u00e9t\u00e9"})
    jwt_header = f"{JWT_HEADER}: {sign_speech_engine_jwt(api_key)}\r\n".encode()
    with capture_logs() as logs:
        status, body = await raw_request(
            channel.server.port, upgrade_request("/ws", jwt_header + b"x-voice-channel-secret: " + value + b"\r\n")
        )
    assert status == 401, body
    assert b"Traceback" not in body
    rejected = [e for e in logs if e["event"] == "handshake_rejected"]
    assert len(rejected) == 1 and "secret" in rejected[0]["reason"]
    assert not [e for e in logs if e.get("log_level") in ("error", "critical")]
    assert channel.app[STATE].conversations == {}


async def test_undecodable_jwt_header_is_401(start_channel):
    channel = await start_channel()
    with capture_logs() as logs:
        status, _ = await raw_request(
            channel.server.port, upgrade_request("/ws", JWT_HEADER.encode() + b": ey\xff\xfe.x.y\r\n")
        )
    assert status == 401
    assert [e["event"] for e in logs] == ["handshake_rejected"]


async def test_undecodable_access_code_is_401_not_500(start_channel, elevenlabs):
    channel = await start_channel(
        elevenlabs=elevenlabs.settings(speech_engine_id=elevenlabs.add_engine()), token={"bearer_secret": "abcd1234"}
    )
    head = (
        b"GET /api/token HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        b"Sec-Fetch-Site: same-origin\r\nAuthorization: Bearer abcd\xff\xfe\r\n\r\n"
    )
    status, body = await raw_request(channel.server.port, head)
    assert status == 401 and b"access_code_wrong" in body


async def test_the_right_non_ascii_shared_secret_still_opens(start_channel, api_key):
    channel = await start_channel(auth={"header_secret": "s3cret-\u00e9t\u00e9"})
    jwt_header = f"{JWT_HEADER}: {sign_speech_engine_jwt(api_key)}\r\n".encode()
    status, _ = await raw_request(
        channel.server.port,
        upgrade_request("/ws", jwt_header + b"x-voice-channel-secret: " + "s3cret-\u00e9t\u00e9".encode() + b"\r\n"),
    )
    assert status == 101


# --- 11. DNS rebinding: without configuration only loopback origins get tokens ------------------------------


@pytest.fixture
def anonymous_tokens(start_channel, elevenlabs: ElevenLabsStandin):
    async def start(**extra):
        engine_id = elevenlabs.add_engine()
        return await start_channel(
            elevenlabs=elevenlabs.settings(speech_engine_id=engine_id), token={"allow_anonymous": True}, **extra
        )

    return start


async def test_a_rebinding_page_does_not_pass_the_origin_check(anonymous_tokens, elevenlabs):
    channel = await anonymous_tokens()
    port = channel.server.port
    # A page on attacker.example whose name now resolves to 127.0.0.1: Host and Origin agree, both hostile.
    hostile = f"http://attacker.example:{port}"
    with capture_logs() as logs:
        status, body, _ = await get_token(channel, {"Origin": hostile, "Host": f"attacker.example:{port}"})
    assert (status, body["code"]) == (403, "origin_not_allowed")
    assert "token.allowed_origins" in body["error"] and "server.public_url" in body["error"]
    (denied,) = [e for e in logs if e["event"] == "token_denied"]
    assert "token.allowed_origins" in denied["reason"]
    assert elevenlabs.state.calls("GET", "token") == []


async def test_a_rebinding_page_fetching_same_origin_does_not_pass_either(anonymous_tokens, elevenlabs):
    """A same-origin GET carries no Origin: the page's origin is then the Host, held to the same rule."""
    channel = await anonymous_tokens()
    headers = {"Sec-Fetch-Site": "same-origin", "Host": f"attacker.example:{channel.server.port}"}
    status, body, _ = await get_token(channel, headers)
    assert (status, body["code"]) == (403, "origin_not_allowed")
    assert elevenlabs.state.calls("GET", "token") == []


async def test_behind_a_tls_proxy_a_same_origin_page_on_the_public_url_gets_a_token(anonymous_tokens):
    channel = await anonymous_tokens(server={"public_url": "https://voice.example.com"})
    # The proxy forwards Host (nginx: proxy_set_header Host $host); the server itself sees plain http.
    status, _, _ = await get_token(channel, {"Sec-Fetch-Site": "same-origin", "Host": "voice.example.com"})
    assert status == 200
    status, _, _ = await get_token(channel, {"Sec-Fetch-Site": "same-origin", "Host": "other.example.com"})
    assert status == 403


@pytest.mark.parametrize(
    "origin",
    [
        "http://127.0.0.1:{port}",
        "http://localhost:{port}",
        "http://[::1]:{port}",
        "https://localhost",
        "http://127.0.0.1:1",
    ],
)
async def test_loopback_pages_get_tokens_without_configuration(anonymous_tokens, origin):
    channel = await anonymous_tokens()
    status, body, _ = await get_token(channel, {"Origin": origin.format(port=channel.server.port)})
    assert status == 200, body


@pytest.mark.parametrize("origin", ["http://127.0.0.2:80", "http://localhost.attacker.example", "http://0.0.0.0:8765"])
async def test_look_alikes_of_loopback_are_not_loopback(anonymous_tokens, origin):
    channel = await anonymous_tokens()
    status, body, _ = await get_token(channel, {"Origin": origin})
    assert (status, body["code"]) == (403, "origin_not_allowed")


async def test_doctor_says_only_loopback_pages_get_tokens_and_what_to_set(make_settings):
    from voice_channel.elevenlabs.doctor import _check_browser

    settings = make_settings(token={"allow_anonymous": True})
    check = _check_browser(settings)
    assert check.status == "warn" and "loopback" in check.detail
    assert "token.allowed_origins" in check.fix and "server.public_url" in check.fix


# --- 12. the insecure-mode warning says what protects the endpoint --------------------------------------


async def _stop(served) -> str:
    served.proc.send_signal(2)
    _out, err = await served.proc.communicate()
    return err.decode()


@pytest.mark.parametrize(
    ("extra", "protection"),
    [
        ({}, "nothing"),
        ({"ELEVENLABS_API_KEY": "sk_present_but_unused"}, "nothing"),
        ({"VOICE_CHANNEL_AUTH__HEADER_SECRET": "a-shared-secret-1"}, "shared secret"),
    ],
)
async def test_insecure_warning_says_exactly_what_protects_the_endpoint(extra, protection):
    served = await serve("--insecure-no-auth", **extra)
    await _stop(served)
    (warning,) = [e for e in served.startup if e["event"] == "INSECURE_NO_AUTH"]
    assert warning["protected_by"] == protection
    assert "shared_secret" not in warning
    if protection == "nothing":
        assert "anyone who can reach this port" in warning["message"]
    else:
        assert "x-voice-channel-secret" in warning["message"]


async def test_with_jwt_on_the_startup_line_says_so():
    served = await serve(ELEVENLABS_API_KEY="sk_cli_key_for_jwt", VOICE_CHANNEL_AUTH__HEADER_SECRET="hs-1234")
    await _stop(served)
    assert not [e for e in served.startup if e["event"] == "INSECURE_NO_AUTH"]
    (listening,) = [e for e in served.startup if e["event"] == "listening"]
    assert listening["protected_by"] == "ElevenLabs JWT + shared secret"


# --- /healthz details: an operator-only /status --------------------------------------------------------


async def get(channel, path: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(channel.server.make_url(path), headers=headers) as r:
        return r.status, await r.text()


async def test_status_is_404_unless_a_bearer_secret_is_configured(start_channel):
    channel = await start_channel()
    assert (await get(channel, "/status"))[0] == 404
    assert (await get(channel, "/status", {"Authorization": "Bearer anything"}))[0] == 404


async def test_status_answers_details_only_with_the_bearer_secret(start_channel):
    channel = await start_channel(status={"bearer_secret": "st-9f8e7d6c"})
    for headers in (None, {"Authorization": "Bearer st-9f8e7d6"}, {"Authorization": "Basic st-9f8e7d6c"}):
        status, body = await get(channel, "/status", headers)
        assert status == 404 and "echo" not in body, headers
    status, body = await get(channel, "/status", {"Authorization": "Bearer st-9f8e7d6c"})
    assert status == 200
    details = json.loads(body)
    assert details["status"] == "ok" and details["runtime"] == "echo" and details["conversations"] == 0
    assert details["version"] and details["uptime_s"] >= 0
    for path in ("/healthz", "/readyz", "/livez"):
        _, anonymous = await get(channel, path)
        assert "echo" not in anonymous and "version" not in anonymous
