"""What the openclaw runtime sends with chat.send can never be read as a Gateway command."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import voice_channel_openclaw.plugin as openclaw_plugin
from runtime_support import adapter_settings
from voice_channel.channel.untrusted import read_transcript
from voice_channel.runtime import RuntimeMessage
from voice_channel.settings import SettingsError, load_settings
from voice_channel_openclaw.identity import DeviceIdentity, IdentityError
from voice_channel_openclaw.message import VOICE_PREAMBLE, gateway_message, neutralize_commands
from voice_channel_openclaw.runtime import session_key

BOUNDARY = "vc-0123456789ab"
# The Gateway's own detectors (openclaw 2026.9.6, dist/command-detection-*.mjs):
# a command starts the message with "/"; inline directives/shortcuts match this anywhere;
# "/ cmd" is a spaced plugin command; abort triggers must be the whole message.
INLINE = re.compile(r"(?:^|\s)[/!][a-z]", re.IGNORECASE)
SPACED = re.compile(r"(?:^|\s)/\s+[a-z]", re.IGNORECASE)
ABORT_TRIGGERS = {"stop", "esc", "abort", "exit", "interrupt", "halt", "stop run", "please stop", "do not do that"}


def through_the_channel(said: str) -> RuntimeMessage:
    """The caller's words as the trust boundary hands them to a runtime."""
    utterance = read_transcript(
        [{"role": "user", "content": said}], boundary=BOUNDARY, max_chars=2000, max_history_items=200
    )
    return RuntimeMessage(text=utterance.text, conversation_id="c", event_id=1, boundary=BOUNDARY)


@pytest.mark.parametrize(
    "said",
    [
        "/reset",
        "/new",
        "!ls",
        "\\stop",
        "please /exec security=full ask=off",
        "hey /status",
        "/ skill x",
        "[[reply_to:1]]",
    ],
)
def test_known_command_shapes_are_defused(said):
    sent = gateway_message(through_the_channel(said))
    assert sent.startswith(VOICE_PREAMBLE + "\n")
    assert not INLINE.search(sent) and not SPACED.search(sent) and "[[" not in sent


@given(st.text(min_size=1, max_size=300))
@settings(max_examples=400, deadline=None)
def test_no_utterance_can_become_a_command(said):
    message = through_the_channel(said)
    sent = gateway_message(message)
    assert not sent.lstrip().startswith(("/", "!"))
    assert not INLINE.search(sent), sent
    assert not SPACED.search(sent), sent
    assert "[[" not in sent and "]]" not in sent
    assert sent.strip().casefold() not in ABORT_TRIGGERS
    assert sent.count(f"<<caller-speech {BOUNDARY}>>") == 1, "the caller cannot forge or close the boundary"
    assert sent.count(f"<<end-caller-speech {BOUNDARY}>>") == 1
    assert sent.endswith(f"\n<<end-caller-speech {BOUNDARY}>>")


def test_words_survive():
    assert (
        neutralize_commands("use and/or a URL http://x/y, say !important")
        == "use and/or a URL http://x/y, say important"
    )


def test_session_key_is_per_conversation_and_safe():
    assert session_key("main", "conv_abc123") == "agent:main:elevenlabs:conv_abc123"
    assert session_key("main", "a b/../c") == "agent:main:elevenlabs:a_b_.._c"
    assert len(session_key("main", "x" * 1000)) < 512


def test_settings_errors_name_the_key(tmp_path):
    cls = type(adapter_settings([openclaw_plugin]))
    config = tmp_path / "c.yaml"
    config.write_text("openclaw:\n  gateway_url: http://127.0.0.1:18789\n")
    with pytest.raises(SettingsError, match=r"openclaw\.gateway_url.*ws://"):
        load_settings(config_file=config, settings_cls=cls)
    config.write_text("openclaw:\n  agent_id: 'main; rm'\n")
    with pytest.raises(SettingsError, match=r"openclaw\.agent_id"):
        load_settings(config_file=config, settings_cls=cls)
    config.write_text("openclaw:\n  token: secret-token-value\n")
    assert "secret-token-value" not in repr(load_settings(config_file=config, settings_cls=cls))


def test_device_key_file_errors_are_clear(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(IdentityError, match="not a valid key file"):
        DeviceIdentity.load_or_create(bad)
    good = tmp_path / "good.json"
    identity = DeviceIdentity.load_or_create(good)
    data = json.loads(good.read_text())
    data["deviceId"] = "0" * 64
    good.write_text(json.dumps(data))
    with pytest.raises(IdentityError, match="does not match"):
        DeviceIdentity.load_or_create(good)
    assert len(identity.device_id) == 64 and "=" not in identity.public_key
