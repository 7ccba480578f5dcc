"""``voice-channel doctor`` against the REST stand-in and a real running channel."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
import structlog
from aiohttp.test_utils import TestServer
from click.testing import CliRunner

from support import BackgroundLoop, ElevenLabsStandin
from voice_channel.app import create_app
from voice_channel.cli import cli
from voice_channel.plugins import get_plugin_manager
from voice_channel.settings import Settings

SECRET = "shared-secret-abcdef"


class Deployment:
    """A channel served on the background loop, an engine pointing at it, and the doctor's environment."""

    def __init__(self, background: BackgroundLoop, standin: ElevenLabsStandin, api_key: str, monkeypatch) -> None:
        self.background, self.standin, self.api_key, self.monkeypatch = background, standin, api_key, monkeypatch
        self.servers: list[TestServer] = []

    def serve(self, **settings: Any) -> str:
        """Start a channel; returns its public base URL."""
        settings.setdefault("elevenlabs", {"api_key": self.api_key})
        app = create_app(Settings(**settings), get_plugin_manager(load_entrypoints=False))

        async def start() -> TestServer:
            server = TestServer(app, host="127.0.0.1")
            await server.start_server()
            return server

        server = self.background.run(start())
        self.servers.append(server)
        return str(server.make_url("")).rstrip("/")

    def configure(self, public_url: str, *, engine_ws_url: str | None = None, engine_headers: Any = None) -> str:
        headers = {"x-voice-channel-secret": SECRET} if engine_headers is None else engine_headers
        engine_id = self.standin.add_engine(
            name="Prod",
            speech_engine={
                "ws_url": engine_ws_url or public_url.replace("http", "ws") + "/ws",
                "request_headers": headers,
            },
        )
        for name, value in {
            "ELEVENLABS_API_KEY": self.api_key,
            "ELEVENLABS_SPEECH_ENGINE_ID": engine_id,
            "VOICE_CHANNEL_ELEVENLABS__BASE_URL": self.standin.base_url,
            "VOICE_CHANNEL_ELEVENLABS__MAX_RETRIES": "0",
            "VOICE_CHANNEL_SERVER__PUBLIC_URL": public_url,
            "VOICE_CHANNEL_AUTH__HEADER_SECRET": SECRET,
        }.items():
            self.monkeypatch.setenv(name, value)
        return engine_id

    def doctor(self) -> tuple[int, dict[str, dict[str, Any]]]:
        result = CliRunner().invoke(cli, ["doctor", "--json"], catch_exceptions=False)
        assert self.api_key not in result.output and SECRET not in result.output
        report = json.loads(result.stdout)
        assert report["ok"] is (result.exit_code == 0)
        return result.exit_code, {check["name"]: check for check in report["checks"]}

    def close(self) -> None:
        for server in self.servers:
            self.background.run(server.close())


@pytest.fixture
def deployment(background, threaded_elevenlabs, api_key, monkeypatch):
    # The channel runs in this process: keep its log lines out of the CLI output the tests parse.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(io.StringIO()))
    made = Deployment(background, threaded_elevenlabs, api_key, monkeypatch)
    yield made
    made.close()


def statuses(checks: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {name: check["status"] for name, check in checks.items()}


def test_a_consistent_deployment_passes(deployment):
    public = deployment.serve(auth={"header_secret": SECRET})
    deployment.configure(public)
    code, checks = deployment.doctor()
    assert code == 0
    assert statuses(checks) == {
        "api_key": "ok",
        "engine_id": "ok",
        "engine": "ok",
        "ws_url": "ok",
        "header_secret": "ok",
        "confirmation_language": "ok",
        "turn.turn_timeout": "ok",
        "turn.silence_end_call_timeout": "ok",
        "turn.turn_eagerness": "ok",
        "turn.speculative_turn": "ok",
        "turn.turn_model": "ok",
        "ignore_terms": "ok",
        "websocket": "ok",
        "browser": "ok",
    }
    assert checks["websocket"]["detail"].endswith("refuses connections that ElevenLabs did not sign")

    readable = CliRunner().invoke(cli, ["doctor"], catch_exceptions=False)
    assert readable.exit_code == 0 and readable.output.splitlines()[-1] == "All checks passed."
    assert readable.output.splitlines()[0].startswith("ok    api_key")


def test_a_ws_url_that_is_not_this_server_fails_with_the_fix(deployment):
    public = deployment.serve(auth={"header_secret": SECRET})
    deployment.configure(public, engine_ws_url="wss://old.example.com/ws")
    code, checks = deployment.doctor()
    assert code == 1
    assert checks["ws_url"]["status"] == "fail"
    assert checks["ws_url"]["fix"] == f"voice-channel engine update --ws-url {public.replace('http', 'ws')}/ws"


@pytest.mark.parametrize(
    ("engine_headers", "status", "words"),
    [
        ({}, "fail", "does not send it"),
        ({"X-Voice-Channel-Secret": "something-else"}, "fail", "different"),
        ({"x-voice-channel-secret": {"secret_id": "wsec_1"}}, "warn", "workspace secret"),
    ],
)
def test_the_header_secret_must_match_the_engine(deployment, engine_headers, status, words):
    public = deployment.serve(auth={"header_secret": SECRET})
    deployment.configure(public, engine_headers=engine_headers)
    _, checks = deployment.doctor()
    assert checks["header_secret"]["status"] == status and words in checks["header_secret"]["detail"]
    if status == "fail":
        assert checks["header_secret"]["fix"] == "voice-channel engine update --secret-header"


def test_an_engine_secret_the_server_ignores_is_a_warning(deployment, monkeypatch):
    public = deployment.serve()
    deployment.configure(public)
    monkeypatch.delenv("VOICE_CHANNEL_AUTH__HEADER_SECRET")
    code, checks = deployment.doctor()
    assert code == 0 and checks["header_secret"]["status"] == "warn"


def test_the_websocket_probe_tells_what_answers(deployment, monkeypatch):
    other_secret = deployment.serve(auth={"header_secret": "not-the-same-secret"})
    deployment.configure(other_secret)
    _, checks = deployment.doctor()
    assert checks["websocket"]["status"] == "fail" and "shared secret" in checks["websocket"]["detail"]

    unsigned = deployment.serve(auth={"header_secret": SECRET, "insecure_no_auth": True})
    deployment.configure(unsigned)
    _, checks = deployment.doctor()
    assert checks["websocket"]["status"] == "warn" and "without ElevenLabs' signature" in checks["websocket"]["detail"]

    other_path = deployment.serve(auth={"header_secret": SECRET}, server={"path": "/speech"})
    deployment.configure(other_path)
    _, checks = deployment.doctor()
    assert checks["websocket"]["status"] == "fail" and "HTTP 404" in checks["websocket"]["detail"]

    deployment.configure("http://127.0.0.1:9")
    code, checks = deployment.doctor()
    assert code == 1 and checks["websocket"]["status"] == "fail"
    assert checks["websocket"]["detail"].startswith("cannot reach ws://127.0.0.1:9/ws")


def test_missing_key_or_unknown_engine(deployment, monkeypatch):
    public = deployment.serve(auth={"header_secret": SECRET})
    deployment.configure(public)
    monkeypatch.setenv("ELEVENLABS_SPEECH_ENGINE_ID", "seng_unknown")
    code, checks = deployment.doctor()
    assert code == 1 and checks["engine"]["status"] == "fail"
    assert checks["engine"]["detail"] == "ElevenLabs does not know the configured Speech Engine."
    assert checks["websocket"]["status"] == "ok"  # probed at server.public_url instead

    monkeypatch.delenv("ELEVENLABS_API_KEY")
    code, checks = deployment.doctor()
    assert code == 1
    assert (checks["api_key"]["status"], checks["engine"]["status"]) == ("fail", "skip")
    assert checks["api_key"]["fix"] == "set ELEVENLABS_API_KEY"


@pytest.mark.parametrize(
    ("setting", "engine", "headers", "status", "words"),
    [
        (None, None, {}, "ok", "confirmations in en (confirmations.language)"),
        ("es", "es", {}, "ok", "confirmations in es (confirmations.language)"),
        (None, "de", {}, "warn", "the engine's language is de, but confirmations in en"),
        (None, "ja", {}, "warn", "ja, which confirmations do not speak; callers hear en"),
        (None, "es", {"x-voice-channel-language": "es"}, "ok", "confirmations in es (x-voice-channel-language"),
        (None, None, {"x-voice-channel-language": "tlh"}, "warn", "'tlh', which confirmations do not speak"),
        (None, None, {"x-voice-channel-language": {"variable_name": "lang"}}, "ok", "dynamic variable lang"),
    ],
)
def test_the_confirmation_language_matches_the_engine(deployment, monkeypatch, setting, engine, headers, status, words):
    public = deployment.serve(auth={"header_secret": SECRET})
    engine_id = deployment.configure(public, engine_headers={"x-voice-channel-secret": SECRET, **headers})
    if engine is not None:
        deployment.standin.state.engines[engine_id]["language"] = engine
    if setting is not None:
        monkeypatch.setenv("VOICE_CHANNEL_CONFIRMATIONS__LANGUAGE", setting)
    code, checks = deployment.doctor()
    check = checks["confirmation_language"]
    assert (check["status"], code) == (status, 0) and words in check["detail"], check
    if status == "warn" and engine == "de":
        assert check["fix"] == "voice-channel engine update --language de"
