"""Barge-in on Hermes's real gateway: each interrupted request stays its own message in the model's next request,
followed by what the caller heard of the answer, trimmed to it (issue 11, item 1)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from hermes_support import FakeLLM
from voice_channel.elevenlabs.client import SpeechEngineClient

pytestmark = pytest.mark.asyncio(loop_scope="session")

BARGE_INS = 20
_BLOCK = re.compile(r"<<caller-speech (vc-[0-9a-f]+)>>\n(.*?)\n<<end-caller-speech \1>>", re.DOTALL)


def utterance(index: int) -> str:
    return f"Tell me SLOW story number {index}."


def _text(content: Any) -> str:
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content or ""


def _words(text: str) -> list[str]:
    return text.split()


def request_for(llm: FakeLLM, index: int) -> list[dict[str, Any]]:
    """The messages of the model's first main-agent request answering ``utterance(index)``."""
    for body in llm.requests:
        messages = body.get("messages") or []
        if not body.get("tools") or not messages or messages[-1].get("role") != "user":
            continue
        blocks = _BLOCK.findall(_text(messages[-1].get("content")))
        if blocks and blocks[-1][1] == utterance(index):
            return messages
    raise AssertionError(f"the model never got utterance {index}")


async def first_words(client: SpeechEngineClient, count: int) -> str:
    """Read the current turn's chunks until ``count`` words arrived; return the first ``count``: what was heard."""
    received = ""
    async for frame in client.frames(timeout=30):
        if frame.get("type") == "agent_response" and frame.get("event_id") == client.event_id:
            received += frame.get("content") or ""
            if len(_words(received)) > count:
                break
    return " ".join(_words(received)[:count])


async def test_twenty_barge_ins_keep_each_request_apart_with_what_the_caller_heard(gateway, llm):
    heard: dict[int, str] = {}
    async with gateway.client() as client:
        await client.say(utterance(0))
        for index in range(1, BARGE_INS + 1):
            # The caller hears the first few words, then speaks over the rest (Hermes has generated more by then).
            heard[index - 1] = await first_words(client, 2 + index % 3)
            client.heard(heard[index - 1])
            await client.say(utterance(index))
        client.heard(await first_words(client, 2))
        await client.say("Thanks, that is all.")
        last = await client.reply(timeout=30)
        assert last.text.strip() == "You said Thanks, that is all."

    merged, missing = [], []
    for index in range(1, BARGE_INS + 1):
        messages = request_for(llm, index)
        newest = [block for _, block in _BLOCK.findall(_text(messages[-1]["content"]))]
        if newest != [utterance(index)]:
            merged.append((index, newest))
            continue
        before, earlier = messages[-2], messages[-3]
        if not (
            before.get("role") == "assistant"
            and _words(_text(before.get("content"))) == _words(heard[index - 1])
            and earlier.get("role") == "user"
            and [block for _, block in _BLOCK.findall(_text(earlier["content"]))] == [utterance(index - 1)]
        ):
            missing.append((index, heard[index - 1], [(m.get("role"), _text(m.get("content"))) for m in messages[-3:]]))
    assert (merged, missing) == ([], []), (
        f"{len(merged)} of {BARGE_INS} barge-ins merged into one user message: {merged}; "
        f"{len(missing)} others without the heard answer between the two requests: {missing}"
    )
