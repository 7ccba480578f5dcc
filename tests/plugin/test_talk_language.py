"""``voice-channel talk`` in other languages: the language header it sends, and the pending-confirmation hint."""

from __future__ import annotations

import io
import sys

from click.testing import CliRunner

from voice_channel.cli import cli
from voice_channel.talk import Talk


async def lines(*items: str):  # type: ignore[no-untyped-def]
    for item in items:
        yield item


async def test_talk_recognises_a_prompt_in_the_conversation_language_and_hints_its_answers(start_channel):
    channel = await start_channel(runtime="demo")
    out = io.StringIO()
    async with channel.client(headers={"x-voice-channel-language": "es"}) as client:
        talker = Talk(client, out=out)
        assert await talker.run(lines("add milk", "remove milk", "sí", "clear my list", "no")) == 0
    shown = out.getvalue()
    assert "agent> Necesito confirmación: Remove milk from your list." in shown
    assert "[confirmation pending: the agent is waiting for your answer: sí or no]" in shown
    assert "agent> Removed milk." in shown
    assert "Your list is already empty." in shown


async def test_talk_hint_for_a_code_word_in_german(start_channel):
    channel = await start_channel(runtime="demo", confirmations={"language": "de"})
    out = io.StringIO()
    async with channel.client() as client:
        talker = Talk(client, out=out)
        assert await talker.run(lines("add milk", "clear my list", "nein")) == 0
    shown = out.getvalue()
    assert 'the agent is waiting for your answer: the code word "' in shown and '", or nein]' in shown
    assert "agent> Okay, I kept your list." in shown


def test_talk_refuses_a_language_it_cannot_send():
    result = CliRunner().invoke(cli, ["talk", "--url", "ws://127.0.0.1:9/ws", "--language", "klingon"])
    assert result.exit_code == 2
    assert "--language must be one of en, es, de, fr, pt" in result.output and "Traceback" not in result.output


def test_talk_language_is_sent_as_the_header(monkeypatch):
    seen = {}

    async def fake_run_talk(url, *, api_key, headers, reply_timeout):  # type: ignore[no-untyped-def]
        seen.update(headers)
        return 0

    # The module, not the command of the same name that voice_channel.cli exports.
    monkeypatch.setattr(sys.modules["voice_channel.cli.talk"], "run_talk", fake_run_talk)
    args = ["talk", "--url", "ws://h/ws", "--language", "pt-BR", "--header", "x-a: 1"]
    assert CliRunner().invoke(cli, args).exit_code == 0
    assert seen == {"x-a": "1", "x-voice-channel-language": "pt"}
    custom = ["talk", "--url", "ws://h/ws", "--language", "fr", "--language-header", "X-Caller-Lang"]
    assert CliRunner().invoke(cli, custom).exit_code == 0
    assert seen["X-Caller-Lang"] == "fr"
