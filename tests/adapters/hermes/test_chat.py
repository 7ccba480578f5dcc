"""VoiceChat's routing and cancellation rules, against a scripted stand-in for the Hermes adapter."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from voice_channel.channel.record import ConversationRecord
from voice_channel.runtime import (
    ConfirmationDecision,
    ConfirmationRequest,
    ConversationContext,
    Notice,
    RuntimeMessage,
    TextDelta,
)
from voice_channel.settings import Settings
from voice_channel_hermes.chat import VoiceChat

pytestmark = pytest.mark.asyncio(loop_scope="session")

BOUNDARY = "vc-0123456789ab"


class FakePort:
    """Records what the chat asks of Hermes; tests play Hermes's deliveries on the chat."""

    cursor = " ▉"

    def __init__(self) -> None:
        self.submitted: list[tuple[str, str]] = []
        self.stops = 0
        self.busy = False
        self.resolved: list[tuple[str, str]] = []
        self.forgotten = False
        self.submitted_event = asyncio.Event()
        self.amended: list[int] = []

    async def submit(self, chat: VoiceChat, text: str, message_id: str) -> None:
        self.submitted.append((text, message_id))
        self.busy = True
        self.submitted_event.set()

    async def stop(self, chat: VoiceChat, timeout: float) -> None:
        if self.busy:
            self.stops += 1
            self.busy = False

    async def wait_idle(self, chat: VoiceChat, timeout: float) -> bool:
        return not self.busy

    async def amend_reply(self, chat: VoiceChat, heard_words: int) -> None:
        self.amended.append(heard_words)

    def resolve_approval(self, session_key: str, choice: str) -> int:
        self.resolved.append((session_key, choice))
        return 1

    def forget(self, chat: VoiceChat) -> None:
        self.forgotten = True


def make_chat() -> tuple[VoiceChat, FakePort]:
    port = FakePort()
    context = ConversationContext("conv-1", Settings(), ConversationRecord(), BOUNDARY)
    chat = VoiceChat(
        port, context, chat_id="conv-1", session_key="agent:main:x:dm:conv-1", source=None, stop_timeout_s=1
    )
    return chat, port


def message(text: str, event_id: int) -> RuntimeMessage:
    return RuntimeMessage(text=text, conversation_id="conv-1", event_id=event_id, boundary=BOUNDARY)


async def next_submitted(port: FakePort) -> str:
    await port.submitted_event.wait()
    port.submitted_event.clear()
    return port.submitted[-1][1]


async def test_hermes_gets_the_spotlighted_prompt_and_the_reply_streams_until_done():
    chat, port = make_chat()
    run = chat.respond(message("hello there", 1))
    first = asyncio.ensure_future(run.__anext__())
    message_id = await next_submitted(port)
    assert port.submitted[0][0] == f"<<caller-speech {BOUNDARY}>>\nhello there\n<<end-caller-speech {BOUNDARY}>>"
    chat.on_processing(message_id, None)
    chat.on_draft(4, "Hi ▉")
    assert await first == TextDelta("Hi")  # the streaming cursor is not text
    chat.on_send("Hi, how can I help?", message_id, {"reply_to_message_id": message_id, "notify": True}, "o1")
    chat.on_processing(message_id, "success")
    assert [e async for e in run] == [TextDelta(", how can I help?")]
    assert port.stops == 0, "a finished run is not stopped"


async def test_gateway_notices_are_never_spoken():
    chat, port = make_chat()
    run = chat.respond(message("hi", 1))
    collected = asyncio.ensure_future(_drain(run))
    message_id = await next_submitted(port)
    chat.on_send("⚡ Interrupting current task. I'll respond shortly.", message_id, None, "o1")  # busy ack
    chat.on_send("⚡ Stopped. You can continue this session.", "stop-1", {"notify": True}, "o2")
    chat.on_send("📬 No home channel is set for Elevenlabs_Voice.", None, None, "o3")
    chat.on_send('💻 terminal: "ls"', None, None, "o4")
    chat.on_send("Answer.", message_id, {"notify": True}, "o5")
    chat.on_processing(message_id, "success")
    events = await collected
    assert [e for e in events if isinstance(e, TextDelta)] == [TextDelta("Answer.")]
    assert len([e for e in events if isinstance(e, Notice)]) == 4


async def test_interruption_stops_hermes_and_nothing_old_reaches_the_next_turn():
    chat, port = make_chat()
    old = chat.respond(message("tell me a story", 1))
    task = asyncio.ensure_future(_drain(old))
    old_id = await next_submitted(port)
    chat.on_draft(10, "Once upon")
    task.cancel()  # the channel's interruption
    with pytest.raises(asyncio.CancelledError):
        await task
    assert port.stops == 1 and chat.current is None

    new = chat.respond(message("what time is it", 2))
    collected = asyncio.ensure_future(_drain(new))
    new_id = await next_submitted(port)
    # What Hermes may still deliver for the old message: its partial answer and late drafts.
    chat.on_send("Once upon a time", old_id, {"reply_to_message_id": old_id, "notify": True}, "o1")
    chat.on_draft(10, "Once upon a time there")
    chat.on_draft(11, "It is noon")
    chat.on_send("It is noon.", new_id, {"reply_to_message_id": new_id, "notify": True}, "o2")
    chat.on_processing(old_id, "success")
    chat.on_processing(new_id, "success")
    events = await collected
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "It is noon."


async def test_approvals_become_confirmations_and_answers_are_once_or_deny_only():
    chat, port = make_chat()
    run = chat.respond(message("clean up", 1))
    first = asyncio.ensure_future(run.__anext__())
    await next_submitted(port)
    assert chat.on_approval("rm -rf /tmp/x", "delete in root path", "agent:main:x:dm:conv-1")
    request = await first
    assert isinstance(request, ConfirmationRequest)
    assert request.action == "Run the command rm -rf /tmp/x" and "delete in root path" in request.summary
    await chat.resolve(request.id, ConfirmationDecision(True, "user"))
    assert chat.on_approval("<write_file> (plugin approval rule)", "Write the file /tmp/n.txt", "sk")
    second = await run.__anext__()
    assert second.action == "Write the file /tmp/n.txt"
    await chat.resolve(second.id, ConfirmationDecision(False, "timeout"))
    await chat.resolve(second.id, ConfirmationDecision(False, "user"))  # already answered: ignored
    assert port.resolved == [("agent:main:x:dm:conv-1", "once"), ("sk", "deny")]
    await run.aclose()
    assert port.stops == 1


async def test_no_open_reply_means_no_approval_and_close_forgets_the_chat():
    chat, port = make_chat()
    assert not chat.on_approval("rm -rf /", "delete", "sk")
    await chat.aclose()
    assert port.forgotten


async def _drain(run: Any) -> list[Any]:
    return [event async for event in run]


async def test_the_fake_llm_answers_the_newest_of_merged_utterances():
    # Hermes keeps an interrupted run's unanswered utterance and merges it with the next user message
    # (repair_message_sequence joins consecutive user messages with a newline); a model answers the newest.
    from hermes_support import FakeLLM

    old = f"<<caller-speech {BOUNDARY}>>\nTell me a SLOW story.\n<<end-caller-speech {BOUNDARY}>>"
    new = f"<<caller-speech {BOUNDARY}>>\nWhat is the weather?\n<<end-caller-speech {BOUNDARY}>>"
    body = {
        "tools": [{}],
        "messages": [{"role": "system", "content": "x"}, {"role": "user", "content": f"{old}\n{new}"}],
    }
    kind, _user_text, payload = FakeLLM().plan(body)
    assert (kind, payload) == ("text", "You said What is the weather?")


async def _interrupted_reply(
    chat: VoiceChat, port: FakePort, spoken: str, heard: str | None, phrases: tuple[str, ...] | None = None
) -> None:
    """Message 1 is interrupted after ``spoken`` was sent (``phrases`` of it said by the channel on its
    own); the caller heard ``heard`` of it (the core's record)."""
    record = chat._context.record
    old = chat.respond(message("tell me a story", 1))
    task = asyncio.ensure_future(_drain(old))
    await next_submitted(port)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    record.add_user("tell me a story", 1)
    record.add_assistant(spoken, 1, interrupted=True, channel_phrases=phrases)
    record.reconcile_last_reply(heard)


@pytest.mark.parametrize(
    ("spoken", "phrases", "heard", "amended"),
    [
        ("Once upon a time there was a king.", (), "Once upon a", [3]),
        # an entry added without the list (not by the turn engine): the configured phrases and the filler
        ("One moment. Once upon a time there was a king.", None, "One moment. Once upon", [2]),
        (
            "Let me check that. Still working on it. Once upon a time.",
            None,
            "Let me check that. Still working on it. Once",
            [1],
        ),
        # the filler is ours
        ("One moment. Once upon a time there was a king.", ("One moment. ",), "One moment. Once upon", [2]),
        # and so are progress phrases, the built-in ones and a plugin's
        (
            "Let me check that. Still working on it. Once upon a time.",
            ("Let me check that. ", "Still working on it. "),
            "Let me check that. Still working on it. Once",
            [1],
        ),
        (
            "Once upon Hang on, the build is slow. a time there was a king.",
            ("Hang on, the build is slow. ",),
            "Once upon Hang on, the build is slow. a time",
            [4],
        ),
        # a phrase the caller heard only part of is still the channel's
        (
            "Once upon Hang on, the build is slow. a time there was a king.",
            ("Hang on, the build is slow. ",),
            "Once upon Hang on, the",
            [2],
        ),
        # words that only sound like a phrase are Hermes's when the channel did not say them
        ("One moment. Once upon a time.", (), "One moment. Once", [3]),
        ("Once upon a time there was a king.", (), None, [0]),  # nothing heard
    ],
)
async def test_before_the_next_message_hermes_is_told_how_much_of_the_last_reply_was_heard(
    spoken, phrases, heard, amended
):
    chat, port = make_chat()
    await _interrupted_reply(chat, port, spoken, heard, phrases)
    new = chat.respond(message("what time is it", 2))
    collected = asyncio.ensure_future(_drain(new))
    new_id = await next_submitted(port)
    assert port.amended == amended
    chat.on_processing(new_id, "success")
    await collected


async def test_a_reply_heard_in_full_or_one_that_asked_a_confirmation_is_left_as_it_is():
    chat, port = make_chat()
    run = chat.respond(message("hello", 1))
    collected = asyncio.ensure_future(_drain(run))
    first = await next_submitted(port)
    chat.on_send("Hi there.", first, {"notify": True}, "o1")
    chat.on_processing(first, "success")
    await collected
    chat._context.record.add_user("hello", 1)
    chat._context.record.add_assistant("Hi there.", 1)

    run = chat.respond(message("clean up", 2))
    asked = asyncio.ensure_future(run.__anext__())
    await next_submitted(port)
    assert chat.on_approval("rm -rf /tmp/x", "delete", "agent:main:x:dm:conv-1")
    await asked
    await run.aclose()
    chat._context.record.add_user("clean up", 2)
    chat._context.record.add_assistant("Confirmation needed: Run the command", 2, interrupted=True)

    third = chat.respond(message("never mind", 3))
    collected = asyncio.ensure_future(_drain(third))
    third_id = await next_submitted(port)
    chat.on_processing(third_id, "success")
    await collected
    assert port.amended == []
