"""Cutting the last reply in Hermes's transcript to what the caller heard (no gateway needed)."""

from __future__ import annotations

from typing import Any

from voice_channel_hermes.transcript import amend_last_reply, trim_reply

CALL = {"id": "call_1", "type": "function", "function": {"name": "terminal", "arguments": "{}"}}


def test_the_reply_keeps_its_own_first_words_up_to_what_was_heard():
    tail = [{"role": "assistant", "content": "one two three four five", "api_content": "one two three four five"}]
    assert trim_reply(tail, 3) == [{"role": "assistant", "content": "one two three"}]
    assert trim_reply(tail, 5) == tail
    assert trim_reply(tail, 0) == []


def test_tool_calls_and_their_results_stay_and_later_text_goes():
    tail = [
        {"role": "assistant", "content": "Let me look.", "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": "BIG OUTPUT"},
        {"role": "assistant", "content": "It is sunny today."},
        {"role": "session_meta", "content": None},
    ]
    assert trim_reply(tail, 5) == [tail[0], tail[1], {"role": "assistant", "content": "It is"}, tail[3]]
    assert trim_reply(tail, 1) == [
        {"role": "assistant", "content": "Let", "tool_calls": [CALL]},
        tail[1],
        tail[3],
    ]
    assert trim_reply(tail, 0)[0] == {"role": "assistant", "content": "", "tool_calls": [CALL]}


class FakeStore:
    """Hermes's SessionStore as the gateway's /undo uses it: rewind soft-deletes the last user turn."""

    def __init__(self, messages: list[dict[str, Any]]) -> None:
        self.rows = [dict(m) for m in messages]
        self.inactive: list[dict[str, Any]] = []

    def peek_session_id(self, session_key: str) -> str | None:
        return "s1" if session_key == "key" else None

    def load_transcript(self, session_id: str) -> list[dict[str, Any]]:
        return [dict(m) for m in self.rows]

    def rewind_session(self, session_id: str, n: int = 1) -> dict[str, Any] | None:
        last = max(i for i, m in enumerate(self.rows) if m["role"] == "user")
        self.inactive += self.rows[last:]
        target = self.rows[last]["content"]
        del self.rows[last:]
        return {"rewound_count": len(self.inactive), "turns_undone": 1, "target_text": target}

    def append_to_transcript(self, session_id: str, message: dict[str, Any], skip_db: bool = False) -> None:
        self.rows.append(dict(message))


def test_the_transcript_tail_is_rewound_and_written_back_cut():
    history = [
        {"role": "user", "content": "first", "message_id": "m1"},
        {"role": "assistant", "content": "an answer"},
        {"role": "user", "content": "tell me a story", "message_id": "m2"},
        {"role": "assistant", "content": "once upon a time there was"},
    ]
    store = FakeStore(history)
    assert amend_last_reply(store, "key", 3) == 3
    assert store.rows == [*history[:3], {"role": "assistant", "content": "once upon a"}]
    assert store.inactive == history[2:], "the generated answer is kept, inactive, for audit"
    assert amend_last_reply(store, "key", 3) is None, "heard in full: nothing to change"
    assert amend_last_reply(store, "other", 0) is None


def test_nothing_heard_leaves_the_user_message_alone():
    store = FakeStore([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello there"}])
    assert amend_last_reply(store, "key", 0) == 2
    assert store.rows == [{"role": "user", "content": "hi"}]
