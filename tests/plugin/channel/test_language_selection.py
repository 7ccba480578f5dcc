"""How a conversation's language is chosen (setting, handshake header) and what it changes, through a real channel."""

from __future__ import annotations

import asyncio

import pytest
from structlog.testing import capture_logs

from support import Recorder, ScriptedPlugin, barrier, conversation
from voice_channel.channel.confirmations import recognize_prompt
from voice_channel.channel.languages import LANGUAGES
from voice_channel.contract import ConfirmationPolicy
from voice_channel.markers import hookimpl
from voice_channel.runtime import ConfirmationRequest, RuntimeMessage, TextDelta
from voice_channel.settings import SettingsError, load_settings

HEADER = "X-Voice-Channel-Language"


def test_the_language_setting_defaults_to_english_and_takes_regional_tags(monkeypatch):
    assert load_settings().confirmations.language == "en"
    assert load_settings(overrides={"confirmations": {"language": "pt-BR"}}).confirmations.language == "pt"
    monkeypatch.setenv("VOICE_CHANNEL_CONFIRMATIONS__LANGUAGE", "es_MX")
    assert load_settings().confirmations.language == "es"


def test_an_unsupported_language_is_a_clear_error_naming_the_key_and_the_choices():
    with pytest.raises(SettingsError) as excinfo:
        load_settings(overrides={"confirmations": {"language": "klingon"}})
    message = str(excinfo.value)
    assert "confirmations.language" in message and "klingon" in message
    assert all(code in message for code in LANGUAGES)
    assert "Traceback" not in message


class LanguageSeen:
    """Records the language hooks see, and can refuse every request by voice."""

    def __init__(self, refuse: bool = False) -> None:
        self.languages: list[str] = []
        self.refuse = refuse

    @hookimpl
    def voice_channel_conversation_started(self, conversation):  # type: ignore[no-untyped-def]
        self.languages.append(conversation.language)

    @hookimpl
    def voice_channel_confirmation_policy(self, request, conversation):  # type: ignore[no-untyped-def]
        return ConfirmationPolicy.NEVER if self.refuse else None


async def ask_to_remove(client) -> str:  # type: ignore[no-untyped-def]
    await client.say("add milk")
    await client.reply()
    await client.say("remove milk")
    return (await client.reply()).text


@pytest.mark.parametrize(
    ("language", "yes", "no"),
    [
        ("es", "Sí, por favor.", "No, no lo hagas."),
        ("de", "Ja, bitte.", "Nein, nicht."),
        ("fr", "Oui, vas-y.", "Non, ne fais pas ça."),
        ("pt", "Sim, pode ir.", "Não, não faça isso."),
    ],
)
async def test_the_setting_chooses_prompts_and_answers(start_channel, language, yes, no):
    seen = LanguageSeen()
    channel = await start_channel(runtime="demo", plugins=[seen], confirmations={"language": language})
    async with conversation(channel) as client:
        prompt = await ask_to_remove(client)
        assert prompt.startswith(LANGUAGES[language].phrases.prompt_lead), prompt
        assert recognize_prompt(prompt).language == language
        await client.say(no)
        assert (await client.reply()).text == "Okay, I kept milk."
        await ask_to_remove(client)
        await client.say(yes)
        assert (await client.reply()).text == "Removed milk."
    assert seen.languages == [language]


async def test_the_handshake_header_chooses_the_language_per_conversation(start_channel):
    seen = LanguageSeen()
    channel = await start_channel(runtime="demo", plugins=[seen], confirmations={"language": "es"})
    async with conversation(channel, headers={HEADER: "de-AT"}) as client:
        assert (await ask_to_remove(client)).startswith("Bestätigung nötig:")
        await client.say("ja")
        assert (await client.reply()).text == "Removed milk."
    async with conversation(channel) as client:
        assert (await ask_to_remove(client)).startswith("Necesito confirmación:")
        await client.say("claro")
        assert (await client.reply()).text == "Removed milk."
    assert seen.languages == ["de", "es"]


async def test_the_header_name_is_a_setting(start_channel):
    channel = await start_channel(runtime="demo", confirmations={"language_header": "X-Caller-Lang"})
    async with conversation(channel, headers={"X-Caller-Lang": "fr", HEADER: "de"}) as client:
        assert (await ask_to_remove(client)).startswith("Confirmation requise :")


async def test_an_unsupported_header_falls_back_to_the_setting_and_is_logged(start_channel):
    seen = LanguageSeen()
    channel = await start_channel(runtime="demo", plugins=[seen], confirmations={"language": "pt"})
    with capture_logs() as logs:
        async with conversation(channel, headers={HEADER: "tlh"}) as client:
            assert (await ask_to_remove(client)).startswith("Confirmação necessária:")
    assert seen.languages == ["pt"]
    (warning,) = [e for e in logs if e["event"] == "language_header_unsupported"]
    assert (warning["value"], warning["language"]) == ("tlh", "pt")


async def test_a_yes_in_another_language_is_asked_again_in_the_conversation_language_then_denied(start_channel):
    channel = await start_channel(runtime="demo", confirmations={"language": "es"})
    async with conversation(channel) as client:
        await ask_to_remove(client)
        await client.say("ja")
        again = (await client.reply()).text
        assert again.startswith("Perdona, no te he entendido. Necesito confirmación:"), again
        await client.say("oui")
        assert (await client.reply()).text == "Okay, I kept milk."
        await client.say("what is on my list")
        assert (await client.reply()).text == "Your list has milk."


async def test_a_code_word_in_the_conversation_language(start_channel):
    channel = await start_channel(runtime="demo", confirmations={"language": "fr"})
    async with conversation(channel) as client:
        await client.say("add milk")
        await client.reply()
        await client.say("clear my list")
        recognized = recognize_prompt((await client.reply()).text)
        assert recognized.language == "fr" and recognized.code_word in LANGUAGES["fr"].code_words
        await client.say(f"oui, {recognized.code_word}")
        assert (await client.reply()).text == "Cleared your list."


async def test_refusal_repeat_and_stop_in_the_conversation_language(start_channel):
    channel = await start_channel(runtime="demo", plugins=[LanguageSeen(refuse=True)], confirmations={"language": "de"})
    async with conversation(channel) as client:
        await client.say("Wie bitte?")
        assert (await client.reply()).text == "Ich habe noch nichts gesagt."
        await client.say("add milk")
        await client.reply()
        await client.say("remove milk")
        refused = (await client.reply()).text
        assert refused.startswith("Das kann ich nicht per Sprache freigeben"), refused
        await client.say("nochmal")
        assert (await client.reply()).text == refused


async def test_the_timeout_sentence_is_in_the_conversation_language(start_channel):
    decided = asyncio.Event()

    async def behaviour(message: RuntimeMessage, rec: Recorder):  # type: ignore[no-untyped-def]
        if "delete" not in message.text:
            yield TextDelta(f"You said: {message.text}.")
            return
        yield ConfirmationRequest(id="rm-1", action="Borrar notes.txt")
        decided.set()
        yield TextDelta("never spoken")

    plugin = ScriptedPlugin(behaviour)
    channel = await start_channel(
        plugins=[plugin], runtime="scripted", confirmations={"timeout_s": 0.05, "language": "es"}
    )
    async with conversation(channel) as client:
        await client.say("delete notes")
        prompt = await client.reply()
        assert prompt.text.startswith("Necesito confirmación: Borrar notes.txt.")
        client.heard(prompt.text)
        await decided.wait()  # resumed only after the channel's timer denied it
        await barrier(client)
        await client.say("hola")
        reply = await client.reply()
    assert reply.text == "No oí una respuesta a tiempo, así que no lo hice. You said: hola."
    assert [(rid, d.reason) for rid, d in plugin.recorder.resolved] == [("rm-1", "timeout")]
