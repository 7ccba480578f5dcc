"""``talk``'s standard input: a pipe, a regular file or /dev/null, read without an error in the log."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import pytest
from structlog.testing import capture_logs

from voice_channel.talk import stdin_lines


async def _read(stream) -> list[str]:  # type: ignore[no-untyped-def]
    return [line async for line in stdin_lines(stream)]


@pytest.fixture
def dev_null() -> Iterator[TextIO]:
    with open(os.devnull) as stream:
        yield stream


async def test_dev_null_is_the_end_of_input_and_nothing_is_logged(dev_null, caplog):
    with capture_logs() as logs:
        assert await _read(dev_null) == []
        await asyncio.sleep(0)  # where asyncio's failed watch of /dev/null used to be logged
    assert logs == [] and "Exception in callback" not in caplog.text


async def test_a_regular_file_is_read_line_by_line(tmp_path: Path):
    path = tmp_path / "turns.txt"
    path.write_text("hello\nsecond line\n")
    with path.open() as stream:
        assert await _read(stream) == ["hello\n", "second line\n"]


async def test_a_pipe_is_read_through_the_event_loop():
    read_fd, write_fd = os.pipe()
    with os.fdopen(read_fd) as stream:
        lines = asyncio.ensure_future(_read(stream))
        os.write(write_fd, b"one\ntwo\n")
        os.close(write_fd)
        assert await lines == ["one\n", "two\n"]
