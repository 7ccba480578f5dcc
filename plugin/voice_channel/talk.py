"""A terminal conversation with a voice channel, playing the ElevenLabs side.

Each input line is a caller turn: it is sent as a ``user_transcript`` with the running history
and the next ``event_id``; the reply streams onto the screen. Typing while a reply streams is a
barge-in: the history records what was shown of the reply (as ElevenLabs records what was
heard) and the new line supersedes the reply in flight. When input is not a terminal (a pipe or
a file) each line waits for the previous reply, so a script reads like a conversation and the
program exits at the end of input.
"""

from __future__ import annotations

import asyncio
import os
import stat
import sys
from collections.abc import AsyncIterator
from typing import Literal, TextIO

from voice_channel.channel.confirmations import recognize_prompt
from voice_channel.channel.languages import vocabulary
from voice_channel.elevenlabs.client import SpeechEngineClient

__all__ = ["Talk", "input_kind", "stdin_lines"]


class Talk:
    """Drives one conversation from lines of text and prints the replies."""

    def __init__(
        self,
        client: SpeechEngineClient,
        *,
        out: TextIO | None = None,
        wait_for_reply: bool = True,
        reply_timeout: float = 60.0,
        echo_input: bool = True,
    ) -> None:
        """:param echo_input: print each line read as ``you> line``. Off on a terminal, which has shown the line
        as it was typed: then a ``you>`` prompt is printed whenever a new line is awaited instead."""
        self._client = client
        self._echo_input = echo_input
        self._out = out or sys.stdout
        self._wait_for_reply = wait_for_reply
        self._reply_timeout = reply_timeout
        self._current: int | None = None
        self._text: list[str] = []
        self._done = asyncio.Event()
        self._done.set()
        self._lost = asyncio.Event()
        self._timed_out = False
        self.replies: list[str] = []

    async def run(self, lines: AsyncIterator[str]) -> int:
        """Talk until the input ends or the server closes; return an exit status."""
        receiver = asyncio.create_task(self._receive(), name="talk-receiver")
        try:
            self._prompt()
            async for line in lines:
                line = line.strip()
                if not line:
                    self._prompt()
                    continue
                if self._lost.is_set():
                    break
                self._interrupt_if_streaming()
                if self._echo_input:
                    self._print(f"you> {line}\n")
                self._done.clear()
                self._text = []
                self._current = await self._client.say(line)
                if self._wait_for_reply and not await self._wait_reply():
                    break
            if not self._lost.is_set():
                if not self._timed_out:
                    await self._wait_reply()
                await self._client.close_conversation()
        finally:
            receiver.cancel()
            await asyncio.gather(receiver, return_exceptions=True)
        if self._lost.is_set():
            self._print("\n[the server closed the conversation]\n", err=True)
            return 1
        return 1 if self._timed_out else 0

    async def _wait_reply(self) -> bool:
        waiter = asyncio.create_task(self._done.wait())
        lost = asyncio.create_task(self._lost.wait())
        try:
            done, _ = await asyncio.wait(
                {waiter, lost}, timeout=self._reply_timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            waiter.cancel()
            lost.cancel()
        if not done:
            self._print(f"\n[no reply within {self._reply_timeout:g}s]\n", err=True)
            self._timed_out = True
            return False
        return not self._lost.is_set()

    def _interrupt_if_streaming(self) -> None:
        if self._done.is_set():
            return
        shown = "".join(self._text)
        self._print(" [interrupted]\n")
        self._client.heard(shown)
        self._done.set()

    async def _receive(self) -> None:
        try:
            while True:
                try:
                    frame = await self._client.receive(timeout=None)
                except ValueError:  # not JSON, or a binary frame that is not UTF-8
                    frame = None
                if frame == "closed":
                    break
                if not isinstance(frame, dict):
                    self._print("\n[ignored a frame from the server that is not a JSON object]\n", err=True)
                    continue
                if frame.get("type") != "agent_response" or frame.get("event_id") != self._current:
                    continue  # an older turn's chunk, dropped as ElevenLabs would
                if self._done.is_set():
                    continue
                content = frame.get("content") or ""
                if not isinstance(content, str):
                    self._print("\n[ignored an agent_response content that is not text]\n", err=True)
                    content = ""
                if content:
                    if not self._text:
                        self._print("agent> ")
                    self._text.append(content)
                    self._print(content)
                if frame.get("is_final"):
                    self._finish_reply()
        except (TimeoutError, ConnectionError):
            pass
        self._lost.set()

    def _finish_reply(self) -> None:
        text = "".join(self._text)
        if text:
            self._print("\n")
        self.replies.append(text)
        self._client.heard(text)
        prompt = recognize_prompt(text)
        if prompt is not None:
            phrases = vocabulary(prompt.language).phrases
            if prompt.code_word:
                answer = f'the code word "{prompt.code_word}", or {phrases.no}'
            else:
                answer = f"{phrases.yes} or {phrases.no}"
            self._print(f"   [confirmation pending: the agent is waiting for your answer: {answer}]\n")
        self._done.set()
        self._prompt()

    def _prompt(self) -> None:
        """On a terminal, show where the next line goes (the terminal itself echoes what is typed)."""
        if not self._echo_input:
            self._print("you> ")

    def _print(self, text: str, *, err: bool = False) -> None:
        stream = sys.stderr if err else self._out
        stream.write(text)
        stream.flush()


def input_kind(stream: TextIO | None) -> Literal["stream", "file", "empty"]:
    """What ``stream`` is as typed input: ``stream`` (a pipe, a socket or a terminal, which the event
    loop can wait on), ``file`` (a regular file, or a stream without a file descriptor: read at once,
    never blocking for long) or ``empty`` (a character device such as ``/dev/null``, or no standard
    input at all: nothing can ever be typed).

    ``/dev/null`` passes asyncio's own pipe check but epoll refuses it later, in a callback, as a
    logged error; so only a ``stream`` is handed to the loop.
    """
    if stream is None:
        return "empty"
    try:
        fd = stream.fileno()
        mode = os.fstat(fd).st_mode
    except (ValueError, OSError):
        return "file"
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or os.isatty(fd):
        return "stream"
    return "empty" if stat.S_ISCHR(mode) else "file"


async def stdin_lines(stream: TextIO | None = None) -> AsyncIterator[str]:
    """Lines of standard input, read without blocking the event loop."""
    stream = stream or sys.stdin
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    kind = input_kind(stream)
    if kind == "stream":
        try:
            await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), stream)
        except (ValueError, OSError):
            kind = "file"
    if kind == "empty":
        return
    if kind == "file":
        # Reading it never blocks for long.
        for line in stream:
            yield line
        return
    while True:
        raw = await reader.readline()
        if not raw:
            return
        yield raw.decode("utf-8", errors="replace")
