"""Ending tasks one owns, bounded."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from typing import Any

__all__ = ["cancel_and_wait"]


async def cancel_and_wait(tasks: Collection[asyncio.Future[Any]], timeout: float) -> set[asyncio.Future[Any]]:
    """Cancel ``tasks`` and wait for them, ``timeout`` seconds at most; return those still running.

    Bounded on purpose: a task that ignores cancellation (a stuck runtime) must not hold up its owner's
    end. ``asyncio.wait`` neither cancels the tasks again nor swallows a cancellation of the caller. The
    exceptions of the tasks that ended are retrieved (they ended anyway), so none is reported as never
    retrieved; the caller logs what is still running.
    """
    for task in tasks:
        task.cancel()
    if not tasks:
        return set()
    done, still_running = await asyncio.wait(tasks, timeout=timeout)
    for task in done:
        if not task.cancelled():
            task.exception()
    return still_running
