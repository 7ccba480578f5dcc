"""cancel_and_wait: ending tasks one owns, bounded."""

from __future__ import annotations

import asyncio

from voice_channel.tasks import cancel_and_wait


async def test_cancelled_tasks_end_and_one_that_ignores_cancellation_is_returned():
    release, started = asyncio.Event(), asyncio.Event()

    async def stubborn() -> None:
        started.set()
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                pass

    async def failing() -> None:
        raise RuntimeError("failed before it was cancelled")

    obedient = asyncio.ensure_future(asyncio.Event().wait())
    ignoring = asyncio.ensure_future(stubborn())
    failed = asyncio.ensure_future(failing())
    await started.wait()  # it must be running to ignore its cancellation
    await asyncio.wait({failed})  # it failed before it is cancelled
    still_running = await cancel_and_wait([obedient, ignoring, failed], timeout=0.05)
    assert still_running == {ignoring}
    assert obedient.cancelled() and isinstance(failed.exception(), RuntimeError)
    release.set()
    await ignoring


async def test_nothing_to_end_returns_at_once():
    assert await cancel_and_wait([], timeout=10) == set()
