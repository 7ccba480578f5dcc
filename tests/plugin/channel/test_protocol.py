"""The wire format: golden frames in and out."""

from __future__ import annotations

import json

import pytest

from voice_channel.channel.protocol import (
    MAX_EVENT_ID,
    CloseMessage,
    ErrorMessage,
    EventIdOutOfRange,
    InitMessage,
    PingMessage,
    ProtocolError,
    UnknownMessage,
    UserTranscriptMessage,
    encode_agent_response,
    encode_pong,
    is_history_item,
    parse_frame,
)


def test_golden_inbound_frames():
    assert parse_frame('{"type": "init", "conversation_id": "conv_01k"}') == InitMessage(
        type="init", conversation_id="conv_01k"
    )
    frame = parse_frame(
        json.dumps(
            {
                "type": "user_transcript",
                "event_id": 7,
                "user_transcript": [{"role": "agent", "content": "Hello!"}, {"role": "user", "content": "large"}],
            }
        )
    )
    assert isinstance(frame, UserTranscriptMessage) and frame.event_id == 7 and len(frame.user_transcript) == 2
    assert isinstance(parse_frame('{"type":"ping"}'), PingMessage)
    assert isinstance(parse_frame(b'{"type":"close"}'), CloseMessage)
    assert parse_frame('{"type":"error","message":"boom"}') == ErrorMessage(type="error", message="boom")


def test_unknown_fields_and_types_are_tolerated():
    assert parse_frame('{"type":"ping","extra":1}') == PingMessage(type="ping")
    assert parse_frame('{"type":"contextual_update","text":"x"}') == UnknownMessage(type="contextual_update")


def test_event_id_is_optional():
    frame = parse_frame('{"type":"user_transcript","user_transcript":[]}')
    assert isinstance(frame, UserTranscriptMessage) and frame.event_id is None


@pytest.mark.parametrize(
    "raw",
    [
        "nope",
        "[]",
        "null",
        '"s"',
        "{}",
        '{"type": 5}',
        '{"type":"init"}',
        '{"type":"init","conversation_id":""}',
        '{"type":"user_transcript","event_id":"7","user_transcript":[]}',
        '{"type":"user_transcript","event_id":1.5,"user_transcript":[]}',
        '{"type":"user_transcript","event_id":false,"user_transcript":[]}',
        b'\xff\xfe{"type":"ping"}',
    ],
)
def test_malformed_frames_raise_protocol_error(raw):
    with pytest.raises(ProtocolError):
        parse_frame(raw)


@pytest.mark.parametrize(
    ("item", "ok"),
    [
        ({"role": "user", "content": "hi"}, True),
        ({"role": "agent", "content": ""}, True),
        ({"role": "system", "content": "x"}, False),
        ({"role": "assistant", "content": "x"}, False),
        ({"role": "user"}, False),
        ({"role": "user", "content": None}, False),
        ({"role": "user", "content": ["x"]}, False),
        ("text", False),
        (None, False),
    ],
)
def test_history_items_are_validated_one_by_one(item, ok):
    assert is_history_item(item) is ok


def test_outbound_frames_always_carry_all_fields():
    assert json.loads(encode_agent_response("Sure, ", 7, False)) == {
        "type": "agent_response",
        "content": "Sure, ",
        "event_id": 7,
        "is_final": False,
    }
    assert json.loads(encode_agent_response("", 7, True)) == {
        "type": "agent_response",
        "content": "",
        "event_id": 7,
        "is_final": True,
    }
    assert json.loads(encode_agent_response("x", None, False)) == {
        "type": "agent_response",
        "content": "x",
        "is_final": False,
    }
    assert json.loads(encode_pong()) == {"type": "pong"}


def _transcript_with(event_id: object) -> str:
    return json.dumps({"type": "user_transcript", "event_id": event_id, "user_transcript": []})


@pytest.mark.parametrize("event_id", [0, 1, 7, MAX_EVENT_ID])
def test_event_ids_up_to_the_largest_json_safe_integer_are_accepted(event_id):
    frame = parse_frame(_transcript_with(event_id))
    assert isinstance(frame, UserTranscriptMessage) and frame.event_id == event_id


@pytest.mark.parametrize("event_id", [10**30, 2**53, MAX_EVENT_ID + 1, 2**64, -1])
def test_implausible_event_ids_are_refused(event_id):
    assert MAX_EVENT_ID == 2**53 - 1
    with pytest.raises(EventIdOutOfRange, match="event_id"):
        parse_frame(_transcript_with(event_id))
