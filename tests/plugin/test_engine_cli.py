"""``voice-channel engine create|get|update|list|delete``: the real SDK against the REST stand-in."""

from __future__ import annotations

import json
import stat
from typing import Any

import pytest
from click.testing import CliRunner, Result

from elevenlabs_standin import Fault
from support import ElevenLabsStandin
from voice_channel.cli import cli

SECRET = "header-secret-0123456789"


@pytest.fixture
def standin(threaded_elevenlabs: ElevenLabsStandin, api_key: str, monkeypatch: pytest.MonkeyPatch) -> ElevenLabsStandin:
    monkeypatch.setenv("ELEVENLABS_API_KEY", api_key)
    monkeypatch.setenv("VOICE_CHANNEL_ELEVENLABS__BASE_URL", threaded_elevenlabs.base_url)
    monkeypatch.setenv("VOICE_CHANNEL_ELEVENLABS__MAX_RETRIES", "0")
    return threaded_elevenlabs


@pytest.fixture
def run(api_key: str):
    def invoke(*args: str, input: str | None = None) -> Result:
        result = CliRunner().invoke(cli, ["engine", *args], input=input, catch_exceptions=False)
        assert api_key not in result.output and api_key not in result.stderr, "the API key was printed"
        assert SECRET not in result.output and SECRET not in result.stderr, "the header secret was printed"
        return result

    return invoke


def sent(standin: ElevenLabsStandin, method: str) -> list[Any]:
    return [r.json for r in standin.state.requests if r.method == method]


# --- create ----------------------------------------------------------------------------------------


def test_create_derives_ws_url_from_the_public_url_and_writes_the_env_file(
    standin, run, monkeypatch, tmp_path, api_key
):
    monkeypatch.setenv("VOICE_CHANNEL_SERVER__PUBLIC_URL", "https://voice.example.com")
    env_file = tmp_path / ".env"
    env_file.write_text(f"ELEVENLABS_API_KEY={api_key}\nexport ELEVENLABS_SPEECH_ENGINE_ID=seng_old\n# note\n")
    env_file.chmod(0o640)
    result = run("create", "--write-env", str(env_file))
    assert result.exit_code == 0, result.output
    assert sent(standin, "POST") == [
        {
            "speech_engine": {"ws_url": "wss://voice.example.com/ws"},
            "name": "voice-channel",
            "cascade_timeout_seconds": 15.0,
        }
    ]
    (engine_id,) = standin.state.engines
    assert f"Created Speech Engine {engine_id}" in result.output
    assert "wss://voice.example.com/ws" in result.output and "15.0 s" in result.output
    assert env_file.read_text() == (
        f"ELEVENLABS_API_KEY={api_key}\nexport ELEVENLABS_SPEECH_ENGINE_ID={engine_id}\n# note\n"
    )
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o640  # an existing file keeps its permissions

    fresh = tmp_path / "new.env"
    assert run("create", "--write-env", str(fresh)).exit_code == 0
    assert fresh.read_text().startswith("ELEVENLABS_SPEECH_ENGINE_ID=seng_")
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600


def test_create_sends_every_setting_and_the_shared_secret(standin, run, monkeypatch):
    monkeypatch.setenv("VOICE_CHANNEL_AUTH__HEADER_SECRET", SECRET)
    result = run(
        "create",
        "--name", "Support line",
        "--ws-url", "wss://voice.example.com/voice/ws",
        "--header", "x-tenant: acme",
        "--voice-id", "voice123",
        "--tts-model", "eleven_turbo_v2",
        "--tts-speed", "1.1",
        "--asr-provider", "scribe_realtime",
        "--keyword", "milk",
        "--keyword", "eggs",
        "--turn-timeout", "5",
        "--turn-eagerness", "eager",
        "--max-duration", "300",
        "--no-record-voice",
        "--retention-days", "7",
        "--language", "en",
        "--tag", "prod",
        "--allow-first-message",
        "--cascade-timeout", "8",
        "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (body,) = sent(standin, "POST")
    assert body == {
        "name": "Support line",
        "speech_engine": {
            "ws_url": "wss://voice.example.com/voice/ws",
            "request_headers": {"x-tenant": "acme", "x-voice-channel-secret": SECRET, "x-voice-channel-language": "en"},
        },
        "tts": {"voice_id": "voice123", "model_id": "eleven_turbo_v2", "speed": 1.1},
        "asr": {"provider": "scribe_realtime", "keywords": ["milk", "eggs"]},
        "turn": {"turn_timeout": 5.0, "turn_eagerness": "eager"},
        "conversation": {"max_duration_seconds": 300},
        "privacy": {"record_voice": False, "retention_days": 7},
        "language": "en",
        "tags": ["prod"],
        "overrides": {"first_message": True},
        "cascade_timeout_seconds": 8.0,
    }
    shown = json.loads(result.stdout)
    assert shown["speech_engine"]["request_headers"] == {
        "x-tenant": "[redacted]",
        "x-voice-channel-secret": "[redacted]",
        "x-voice-channel-language": "[redacted]",
    }
    assert shown["overrides"] == {"first_message": True} and shown["tts"]["stability"] == 0.5  # API default


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "give --ws-url"),
        (("--ws-url", "https://voice.example.com/ws"), "must be a wss:// URL"),
        (("--ws-url", "wss://h/ws", "--header", "no-colon"), "NAME:VALUE"),
        # Were sent as they are: ElevenLabs then fails to send them when it connects to the channel.
        (("--ws-url", "wss://h/ws", "--header", "x tenant:1"), "NAME:VALUE"),
        (("--ws-url", "wss://h/ws", "--header", "x-tenant:a\r\nx-evil: 1"), "NAME:VALUE"),
        (("--ws-url", "wss://h/ws", "--secret-header"), "needs auth.header_secret"),
    ],
)
def test_create_refuses_bad_input_before_calling_elevenlabs(standin, run, args, message):
    result = run("create", *args)
    assert result.exit_code == 2 and message in result.output
    assert standin.state.requests == []


@pytest.mark.parametrize("problem", ["no such directory", "not UTF-8"])
def test_create_with_an_env_file_it_cannot_write_fails_before_creating_anything(
    standin, run, monkeypatch, tmp_path, problem
):
    # Was: the engine was created, then a FileNotFoundError or UnicodeDecodeError traceback.
    monkeypatch.setenv("VOICE_CHANNEL_SERVER__PUBLIC_URL", "https://voice.example.com")
    env_file = tmp_path / "missing" / ".env"
    if problem == "not UTF-8":
        env_file = tmp_path / ".env"
        env_file.write_bytes(b"ELEVENLABS_API_KEY=\xff\xfe\n")
    result = run("create", "--write-env", str(env_file))
    assert result.exit_code == 2 and "--write-env" in result.output and str(env_file) in result.output
    assert standin.state.requests == []


# --- get -------------------------------------------------------------------------------------------


def test_get_shows_the_configured_engine(standin, run, monkeypatch):
    engine_id = standin.add_engine(
        name="Kitchen", speech_engine={"ws_url": "wss://k.example.com/ws", "request_headers": {"x-a": SECRET}}
    )
    monkeypatch.setenv("ELEVENLABS_SPEECH_ENGINE_ID", engine_id)
    result = run("get")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"Speech Engine {engine_id}"
    assert {line[2:18].strip() for line in lines[1:]} == {
        "id", "name", "ws_url", "request headers", "tts", "asr", "turn", "cascade timeout",
        "first message", "privacy", "language", "tags",
    }  # fmt: skip
    assert "  name             Kitchen" in lines
    assert "  request headers  x-a: [redacted]" in lines
    assert "  first message    override not allowed" in lines
    assert "  tts              eleven_flash_v2, voice cjVigY5qzO86Huf0OWal, speed 1.0" in lines
    agent_id = "agent_" + engine_id.removeprefix("seng_")
    as_json = json.loads(run("get", agent_id, "--json").stdout)
    assert as_json["speech_engine_id"] == engine_id and as_json["name"] == "Kitchen"


def test_get_reports_unknown_and_malformed_ids(standin, run):
    result = run("get", "seng_doesnotexist")
    assert result.exit_code == 1
    assert "ElevenLabs has no such Speech Engine" in result.output
    result = run("get", "seng_a/../../user?x=1")
    assert result.exit_code == 2 and "is not a Speech Engine id" in result.output
    assert [r.path for r in standin.state.requests] == ["/v1/speech-engine/seng_doesnotexist"]  # never the bad id
    assert run("get").exit_code == 2  # no id and none configured


# --- update ----------------------------------------------------------------------------------------


def test_update_sends_only_what_changes_and_keeps_the_headers(standin, run, monkeypatch):
    engine_id = standin.add_engine(
        speech_engine={"ws_url": "wss://old.example.com/ws", "request_headers": {"x-a": "1"}}
    )
    monkeypatch.setenv("ELEVENLABS_SPEECH_ENGINE_ID", engine_id)
    result = run("update", "--ws-url", "wss://new.example.com/ws", "--allow-first-message", "--cascade-timeout", "12")
    assert result.exit_code == 0, result.output
    assert sent(standin, "PATCH") == [
        {
            "speech_engine": {"ws_url": "wss://new.example.com/ws", "request_headers": {"x-a": "1"}},
            "cascade_timeout_seconds": 12.0,
            "overrides": {"first_message": True},
        }
    ]
    engine = standin.state.engines[engine_id]
    assert engine["overrides"]["first_message"] is True and engine["cascade_timeout_seconds"] == 12.0
    assert f"Updated Speech Engine {engine_id}" in result.output

    assert run("update", engine_id, "--voice-id", "v2", "--turn-eagerness", "patient").exit_code == 0
    assert sent(standin, "PATCH")[-1] == {"tts": {"voice_id": "v2"}, "turn": {"turn_eagerness": "patient"}}
    assert standin.state.engines[engine_id]["tts"]["model_id"] == "eleven_flash_v2"  # untouched


def test_update_rotates_and_removes_the_secret_header(standin, run, monkeypatch):
    engine_id = standin.add_engine(
        speech_engine={"ws_url": "wss://h/ws", "request_headers": {"x-voice-channel-secret": "old", "x-b": "2"}}
    )
    monkeypatch.setenv("VOICE_CHANNEL_AUTH__HEADER_SECRET", SECRET)
    assert run("update", engine_id, "--secret-header").exit_code == 0
    headers = standin.state.engines[engine_id]["speech_engine"]["request_headers"]
    assert headers == {"x-voice-channel-secret": SECRET, "x-b": "2"}
    assert run("update", engine_id, "--no-secret-header").exit_code == 0
    assert sent(standin, "PATCH")[-1]["speech_engine"]["request_headers"] == {"x-b": "2"}


def test_language_sets_the_engine_language_and_the_header_the_channel_reads(standin, run, monkeypatch):
    engine_id = standin.add_engine(speech_engine={"ws_url": "wss://h/ws", "request_headers": {"x-b": "2"}})
    monkeypatch.setenv("ELEVENLABS_SPEECH_ENGINE_ID", engine_id)
    assert run("update", "--language", "pt-BR").exit_code == 0
    assert sent(standin, "PATCH")[-1] == {
        "speech_engine": {"ws_url": "wss://h/ws", "request_headers": {"x-b": "2", "x-voice-channel-language": "pt"}},
        "language": "pt-BR",
    }
    # A language per conversation: the client sets the dynamic variable when it starts the session.
    assert run("update", "--language-variable", "caller_language").exit_code == 0
    headers = standin.state.engines[engine_id]["speech_engine"]["request_headers"]
    assert headers == {"x-b": "2", "x-voice-channel-language": {"variable_name": "caller_language"}}
    got = run("get", engine_id)
    assert "x-voice-channel-language: dynamic variable caller_language" in got.output
    assert run("update", "--no-language-header").exit_code == 0
    assert sent(standin, "PATCH")[-1]["speech_engine"]["request_headers"] == {"x-b": "2"}


def test_a_language_the_confirmations_do_not_speak_is_sent_to_the_engine_with_a_warning(standin, run, monkeypatch):
    monkeypatch.setenv("VOICE_CHANNEL_CONFIRMATIONS__LANGUAGE", "de")
    engine_id = standin.add_engine(speech_engine={"ws_url": "wss://h/ws"})
    result = run("update", engine_id, "--language", "ja")
    assert result.exit_code == 0, result.output
    assert sent(standin, "PATCH")[-1] == {"language": "ja"}
    assert "conversations in ja get them in de (confirmations.language)" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--language", "Spanish"), "not a language code"),
        (("--language-variable", "1bad name"), "not a dynamic variable name"),
        (("--language-variable", "x", "--no-language-header"), "not both"),
        (("--language-header",), "needs --language"),
    ],
)
def test_language_options_refuse_bad_input(standin, run, args, message):
    engine_id = standin.add_engine()
    result = run("update", engine_id, *args)
    assert result.exit_code == 2 and message in result.output, result.output
    assert "Traceback" not in result.output
    assert sent(standin, "PATCH") == []


def test_update_needs_something_to_change(standin, run):
    engine_id = standin.add_engine()
    result = run("update", engine_id)
    assert result.exit_code == 2 and "nothing to change" in result.output
    assert standin.state.requests == []


# --- list ------------------------------------------------------------------------------------------


def test_list_pages_and_marks_the_configured_engine(standin, run, monkeypatch):
    ids = [standin.add_engine(name=f"engine {i}", tags=["t"] if i == 0 else []) for i in range(5)]
    standin.add_engine(name="other")
    monkeypatch.setenv("ELEVENLABS_SPEECH_ENGINE_ID", ids[2])
    first = run("list", "--search", "ENGINE", "--page-size", "2")
    assert first.exit_code == 0
    assert len(first.stdout.splitlines()) == 2 and "(more: --all)" in first.stderr
    every = run("list", "--search", "engine", "--page-size", "2", "--all")
    shown = every.stdout.splitlines()
    assert {line[2:].split()[0] for line in shown} == set(ids)
    assert f"* {ids[2]}  engine 2" in shown and f"  {ids[0]}  engine 0  [t]" in shown
    assert len(standin.state.calls("GET", r"^/v1/speech-engine$")) == 1 + 3
    as_json = json.loads(run("list", "--json").stdout)
    assert len(as_json["speech_engines"]) == 6 and as_json["has_more"] is False


def test_list_of_an_empty_account(standin, run):
    assert run("list").stdout == "No Speech Engines.\n"


# --- delete ----------------------------------------------------------------------------------------


def test_delete_asks_first_and_warns_about_the_configured_id(standin, run, monkeypatch):
    engine_id = standin.add_engine()
    monkeypatch.setenv("ELEVENLABS_SPEECH_ENGINE_ID", engine_id)
    refused = run("delete", engine_id, input="n\n")
    assert refused.exit_code == 1 and "Aborted" in refused.output
    assert engine_id in standin.state.engines
    done = run("delete", engine_id, input="y\n")
    assert done.exit_code == 0 and f"Deleted Speech Engine {engine_id}" in done.stdout
    assert "still names the deleted engine" in done.stderr
    assert engine_id not in standin.state.engines
    again = run("delete", engine_id, "--yes")
    assert again.exit_code == 1 and "no such Speech Engine" in again.output


# --- failures ----------------------------------------------------------------------------------------


def test_upstream_failures_are_one_clear_line(standin, run, monkeypatch):
    standin.state.faults.append(
        Fault(status=422, body={"detail": [{"loc": ["body", "tts", "model_id"], "msg": "Unknown model", "type": "x"}]})
    )
    result = run("create", "--ws-url", "wss://h/ws", "--tts-model", "eleven_nonsense")
    assert result.exit_code == 1
    assert result.output.splitlines()[-2:] == [
        "Error: ElevenLabs rejected the request as invalid.",
        "  tts.model_id: Unknown model",
    ]
    standin.state.faults.append(Fault(status=500, body="secret internals"))
    result = run("list")
    assert result.exit_code == 1 and "ElevenLabs had a problem" in result.output and "internals" not in result.output

    monkeypatch.setenv("ELEVENLABS_API_KEY", "sk_wrong_key_000000")
    result = run("list")
    assert result.exit_code == 1 and "ElevenLabs refused the server's API key." in result.output
    assert "sk_wrong_key_000000" not in result.output

    monkeypatch.setenv("VOICE_CHANNEL_ELEVENLABS__BASE_URL", "http://127.0.0.1:9")
    result = run("list")
    assert result.exit_code == 1 and "Cannot reach ElevenLabs at http://127.0.0.1:9 (ConnectError)" in result.output

    monkeypatch.delenv("ELEVENLABS_API_KEY")
    result = run("list")
    assert result.exit_code == 2 and "no ElevenLabs API key" in result.output
