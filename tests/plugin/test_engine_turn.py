"""Turn tuning through ``voice-channel engine``: flags → the engine's ``turn`` body (real SDK, REST stand-in),
client-side validation, and what ``engine get`` and ``doctor`` show."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner, Result

from support import ElevenLabsStandin
from voice_channel.cli import cli

TURN_FLAGS = (
    "--turn-timeout", "5",
    "--initial-wait-time", "12",
    "--silence-end-call-timeout", "60",
    "--turn-eagerness", "patient",
    "--spelling-patience", "auto",
    "--speculative-turn",
    "--no-retranscribe-on-turn-timeout",
    "--turn-model", "turn_v3",
    "--ignore-term", "uh-huh",
    "--ignore-term", " Gotcha ",
    "--ignore-term", "UH-HUH",
    "--ignore-term-language", "en",
    "--ignore-term-language", "pt-BR",
    "--merge-default-ignore-terms",
)  # fmt: skip

TURN_BODY = {
    "turn_timeout": 5.0,
    "initial_wait_time": 12.0,
    "silence_end_call_timeout": 60.0,
    "turn_eagerness": "patient",
    "spelling_patience": "auto",
    "speculative_turn": True,
    "retranscribe_on_turn_timeout": False,
    "turn_model": "turn_v3",
    "interruption_ignore_terms": ["uh-huh", "Gotcha"],
    "interruption_ignore_term_languages": ["en", "pt-BR"],
    "merge_with_default_ignore_terms": True,
}


@pytest.fixture
def standin(threaded_elevenlabs: ElevenLabsStandin, api_key: str, monkeypatch: pytest.MonkeyPatch) -> ElevenLabsStandin:
    monkeypatch.setenv("ELEVENLABS_API_KEY", api_key)
    monkeypatch.setenv("VOICE_CHANNEL_ELEVENLABS__BASE_URL", threaded_elevenlabs.base_url)
    monkeypatch.setenv("VOICE_CHANNEL_ELEVENLABS__MAX_RETRIES", "0")
    return threaded_elevenlabs


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, [*args], catch_exceptions=False)


def sent(standin: ElevenLabsStandin, method: str) -> list[Any]:
    return [r.json for r in standin.state.requests if r.method == method]


def test_create_sends_every_turn_setting_in_the_turn_section(standin):
    result = run("engine", "create", "--ws-url", "wss://voice.example.com/ws", *TURN_FLAGS)
    assert result.exit_code == 0, result.output
    (body,) = sent(standin, "POST")
    assert body["turn"] == TURN_BODY
    (engine,) = standin.state.engines.values()
    assert engine["turn"]["interruption_ignore_terms"] == ["uh-huh", "Gotcha"]
    assert "interruption ignore terms 'uh-huh', 'Gotcha'" in result.output
    assert "silence end-call timeout 60.0 s" in result.output


def test_update_sends_only_the_turn_settings_given_and_get_shows_them(standin, monkeypatch):
    engine_id = standin.add_engine(speech_engine={"ws_url": "wss://old.example.com/ws"})
    monkeypatch.setenv("ELEVENLABS_SPEECH_ENGINE_ID", engine_id)
    result = run("engine", "update", "--ignore-term", "mm-hmm", "--silence-end-call-timeout", "-1")
    assert result.exit_code == 0, result.output
    assert sent(standin, "PATCH") == [
        {"turn": {"interruption_ignore_terms": ["mm-hmm"], "silence_end_call_timeout": -1.0}}
    ]
    turn = standin.state.engines[engine_id]["turn"]
    assert turn["turn_eagerness"] == "normal" and turn["turn_timeout"] == 7.0  # untouched

    shown = run("engine", "get")
    turn_line = next(line for line in shown.output.splitlines() if line.startswith("  turn "))
    assert "interruption ignore terms 'mm-hmm'" in turn_line
    assert "silence end-call timeout off" in turn_line and "turn timeout 7.0 s" in turn_line
    as_json = json.loads(run("engine", "get", "--json").stdout)
    assert as_json["turn"]["interruption_ignore_terms"] == ["mm-hmm"]

    assert run("engine", "update", "--clear-ignore-terms").exit_code == 0
    assert sent(standin, "PATCH")[-1] == {"turn": {"interruption_ignore_terms": []}}
    assert standin.state.engines[engine_id]["turn"]["interruption_ignore_terms"] == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--silence-end-call-timeout", "0.5"), "neither -1 (never end the call) nor 1 to 7200"),
        (("--silence-end-call-timeout", "-2"), "neither -1"),
        (("--turn-timeout", "0"), "--turn-timeout"),
        (("--initial-wait-time", "0"), "--initial-wait-time"),
        (("--turn-eagerness", "hasty"), "'hasty' is not one of"),
        (("--spelling-patience", "always"), "'always' is not one of"),
        (("--turn-model", "turn_v9"), "'turn_v9' is not one of"),
        (("--ignore-term", "  "), "an ignore term cannot be empty"),
        (("--ignore-term", "x" * 41), "longer than 40 characters"),
        (("--ignore-term-language", "english"), "not a language code"),
        (("--ignore-term", "ok", "--clear-ignore-terms"), "not both"),
    ],
)
def test_bad_turn_settings_are_refused_before_calling_elevenlabs(standin, monkeypatch, args, message):
    engine_id = standin.add_engine(speech_engine={"ws_url": "wss://old.example.com/ws"})
    monkeypatch.setenv("ELEVENLABS_SPEECH_ENGINE_ID", engine_id)
    standin.state.requests.clear()
    result = run("engine", "update", *args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert standin.state.requests == []


def doctor_checks() -> dict[str, dict[str, Any]]:
    result = run("doctor", "--json")
    return {check["name"]: check for check in json.loads(result.stdout)["checks"]}


def test_doctor_shows_each_turn_setting_and_hints_at_ignore_terms(standin, monkeypatch):
    engine_id = standin.add_engine(speech_engine={"ws_url": "wss://voice.example.com/ws"})
    monkeypatch.setenv("ELEVENLABS_SPEECH_ENGINE_ID", engine_id)
    checks = doctor_checks()
    assert checks["turn.turn_timeout"]["detail"] == "turn timeout: 7.0 s"
    assert checks["turn.turn_eagerness"]["detail"] == "eagerness: normal"
    assert "turn.interruption_ignore_terms" not in checks
    assert checks["ignore_terms"]["status"] == "ok"
    assert "no interruption ignore terms" in checks["ignore_terms"]["detail"]
    assert "--ignore-term uh-huh" in checks["ignore_terms"]["detail"]

    assert run("engine", "update", "--ignore-term", "uh-huh", "--spelling-patience", "off").exit_code == 0
    checks = doctor_checks()
    assert checks["turn.interruption_ignore_terms"]["detail"] == "interruption ignore terms: 'uh-huh'"
    assert checks["turn.spelling_patience"]["detail"] == "spelling patience: off"
    assert "ignore_terms" not in checks

    readable = run("doctor")
    assert "turn.interruption_ignore_terms interruption ignore terms: 'uh-huh'" in " ".join(readable.output.split())
