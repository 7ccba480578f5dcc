"""Text extraction from the stream chunks of common LLM SDKs.

Runtimes may yield plain strings or the raw chunks of the OpenAI (Chat Completions and
Responses), Anthropic and Gemini streaming APIs, as objects or as decoded JSON dicts.
"""

from __future__ import annotations

from typing import Any

__all__ = ["extract_text"]


def _field(obj: Any, name: str) -> Any:
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


def _first(seq: Any) -> Any:
    if isinstance(seq, (list, tuple)) and seq:
        return seq[0]
    return None


def extract_text(chunk: Any) -> str | None:
    """Return the speakable text of ``chunk``, or ``None`` when it carries none.

    Recognised shapes, in order: ``str``; OpenAI Responses ``response.output_text.delta``;
    OpenAI Chat Completions ``choices[0].delta.content``; Anthropic ``content_block_delta``
    with a ``text_delta``; Gemini ``candidates[0].content.parts[*].text`` (thought parts skipped).
    Reasoning, tool-call and usage chunks yield ``None``.
    """
    if isinstance(chunk, str):
        return chunk
    if chunk is None or isinstance(chunk, (bytes, int, float, bool)):
        return None

    kind = _field(chunk, "type")
    if kind == "response.output_text.delta":
        delta = _field(chunk, "delta")
        return delta if isinstance(delta, str) else None
    if kind == "content_block_delta":
        delta = _field(chunk, "delta")
        if delta is not None and _field(delta, "type") == "text_delta":
            text = _field(delta, "text")
            return text if isinstance(text, str) else None
        return None

    choice = _first(_field(chunk, "choices"))
    if choice is not None:
        delta = _field(choice, "delta")
        content = _field(delta, "content") if delta is not None else None
        return content if isinstance(content, str) else None

    candidate = _first(_field(chunk, "candidates"))
    if candidate is not None:
        content = _field(candidate, "content")
        parts = _field(content, "parts") if content is not None else None
        if isinstance(parts, (list, tuple)):
            texts = [
                text
                for part in parts
                if _field(part, "thought") is not True and isinstance(text := _field(part, "text"), str)
            ]
            return "".join(texts) if texts else None
    return None
