"""Cut the answer in Hermes's transcript to what the caller heard of it.

Hermes persists what its model *generated*; after a barge-in the caller heard less (speech lags
the text, and the caller talked over the rest). The voice channel's record knows how many words
were heard (:meth:`voice_channel.channel.record.ConversationRecord.reconcile_last_reply`). Before the
next message goes in, :func:`amend_last_reply` rewrites the tail of the session's transcript, the
last user message and what followed it, so that the assistant text keeps only that many of its
own words. Tool calls and their results stay: they happened.

It uses the gateway's transcript API (the one ``/undo`` uses): the tail is soft-deleted with
``rewind_session`` (kept in ``state.db`` as inactive rows, for audit) and appended again, trimmed,
with ``append_to_transcript``. Older history is not touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

__all__ = ["TranscriptStore", "amend_last_reply", "trim_reply"]


class TranscriptStore(Protocol):
    """The part of Hermes's ``gateway.session.SessionStore`` used here."""

    def peek_session_id(self, session_key: str) -> str | None: ...

    def load_transcript(self, session_id: str) -> list[dict[str, Any]]: ...

    def rewind_session(self, session_id: str, n: int = 1) -> dict[str, Any] | None: ...

    def append_to_transcript(self, session_id: str, message: dict[str, Any], skip_db: bool = False) -> None: ...


def trim_reply(tail: Sequence[dict[str, Any]], heard_words: int) -> list[dict[str, Any]]:
    """The messages after the last user message, with assistant text cut to ``heard_words`` words in all.

    Assistant texts are counted in order; the one where the words run out is cut there, later ones
    lose their text. An assistant message left without text is dropped unless it carries tool
    calls. Other messages (tool results, Hermes's own metadata rows) are kept as they are.
    """
    budget = max(heard_words, 0)
    kept: list[dict[str, Any]] = []
    for message in tail:
        content = message.get("content")
        if message.get("role") != "assistant" or not isinstance(content, str):
            kept.append(message)
            continue
        words = content.split()
        if len(words) <= budget:
            budget -= len(words)
            kept.append(message)
            continue
        text = " ".join(words[:budget])
        budget = 0
        if not text and not message.get("tool_calls"):
            continue
        # The sidecar holds the exact bytes once sent for the full text: it must not outlive the cut.
        trimmed = {key: value for key, value in message.items() if key != "api_content"}
        trimmed["content"] = text
        kept.append(trimmed)
    return kept


def amend_last_reply(store: TranscriptStore, session_key: str, heard_words: int) -> int | None:
    """Cut the last reply in the session's transcript to ``heard_words`` words (blocking: call in a thread).

    Returns how many words of assistant text were removed, or ``None`` when nothing changed.
    """
    session_id = store.peek_session_id(session_key)
    if not session_id:
        return None
    messages = store.load_transcript(session_id)
    last_user = next((i for i in range(len(messages) - 1, -1, -1) if messages[i].get("role") == "user"), None)
    if last_user is None:
        return None
    tail = messages[last_user + 1 :]
    trimmed = trim_reply(tail, heard_words)
    if trimmed == tail:
        return None
    undone = store.rewind_session(session_id, 1)
    if undone is None:
        return None
    user = messages[last_user]
    stored = str(undone.get("target_text") or "")
    if not isinstance(user.get("content"), str) or user["content"] != stored.strip():
        # The loaded message is not the stored row as it is (Hermes merged rows while loading):
        # put back the row that was rewound, not the merge.
        user = {"role": "user", "content": stored}
    for message in (user, *trimmed):
        store.append_to_transcript(session_id, message)
    return _assistant_words(tail) - _assistant_words(trimmed)


def _assistant_words(messages: Sequence[dict[str, Any]]) -> int:
    return sum(
        len(message["content"].split())
        for message in messages
        if message.get("role") == "assistant" and isinstance(message.get("content"), str)
    )
