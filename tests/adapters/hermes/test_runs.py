"""RunTracker: Hermes's run hooks, called in an agent thread, tell the gateway loop when a call's run ended."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import hermes_support
from hermes_support import PLATFORM
from voice_channel_hermes.runs import RunTracker

pytestmark = pytest.mark.asyncio(loop_scope="session")

KEY = f"agent:main:{PLATFORM}:dm:conv-runs"


def in_agent_thread(hook: Any, **kwargs: Any) -> None:
    hermes_support.in_agent_thread(hook, session_key=KEY, **kwargs)


async def test_a_waiter_wakes_when_the_run_ends_and_not_before():
    runs = RunTracker()
    assert await runs.wait_finished(KEY, 0.01), "no run: nothing to wait for"
    in_agent_thread(runs.on_run_start, turn_id="t1")
    assert runs.running(KEY)
    waiter = asyncio.ensure_future(runs.wait_finished(KEY, 30))
    await asyncio.sleep(0)
    assert not waiter.done()
    in_agent_thread(runs.on_run_end, turn_id="t1", interrupted=True)
    assert await waiter and not runs.running(KEY)


async def test_other_platforms_are_ignored_and_a_lost_end_times_out_until_forgotten():
    runs = RunTracker()
    in_agent_thread(runs.on_run_start, platform="telegram", turn_id="t1")
    assert not runs.running(KEY)
    in_agent_thread(runs.on_run_start, turn_id="t2")
    assert not await runs.wait_finished(KEY, 0.05)
    runs.forget(KEY)
    assert await runs.wait_finished(KEY, 0.05)
    in_agent_thread(runs.on_run_end, turn_id="t2")  # a late end of a forgotten run changes nothing
    assert not runs.running(KEY)
