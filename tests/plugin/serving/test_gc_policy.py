"""The garbage-collector policy: applied once the server is ready, and only then; off by setting."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from voice_channel.app import create_app
from voice_channel.serving.gc_policy import YOUNG_THRESHOLD, apply_gc_policy
from voice_channel.serving.server import serve_until_stopped
from voice_channel.settings import Settings


@pytest.fixture(autouse=True)
def _pristine_collector() -> Iterator[None]:
    """Every test starts and ends with nothing frozen and the default thresholds, so a change seen is the code's."""
    thresholds = gc.get_threshold()
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def _tracked(obj: object) -> bool:
    """Whether the collector still walks ``obj`` (frozen objects are in no generation)."""
    return any(o is obj for o in gc.get_objects())


def test_policy_collects_garbage_and_freezes_what_survives() -> None:
    survivor: list[Any] = []
    cycle: list[Any] = []
    cycle.append(cycle)
    del cycle  # unreachable now, only the collector can free it
    assert _tracked(survivor)

    result = apply_gc_policy()

    assert result.collected >= 1
    assert result.frozen == gc.get_freeze_count() > 0
    assert not _tracked(survivor), "an object alive at start-up is still walked by every full collection"
    later: list[Any] = []
    assert _tracked(later), "objects created after start-up must still be collected"
    assert result.thresholds == gc.get_threshold() == (YOUNG_THRESHOLD, 10, 10), "only the young one is raised"


async def _serve_once(settings: Settings) -> tuple[int, int]:
    """Serve until ready; return the number of frozen objects and the young threshold at that moment."""
    stop = asyncio.Event()
    seen: list[tuple[int, int]] = []

    def ready(port: int) -> None:
        seen.append((gc.get_freeze_count(), gc.get_threshold()[0]))
        stop.set()

    await serve_until_stopped(create_app(settings), settings, on_ready=ready, stop=stop)
    return seen[0]


async def test_serve_applies_the_policy_once_ready(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(server={"port": 0})
    assert settings.server.gc_policy is True
    frozen, young = await _serve_once(settings)
    assert frozen > 0
    assert young == YOUNG_THRESHOLD


async def test_serve_leaves_the_collector_alone_when_the_policy_is_off(
    make_settings: Callable[..., Settings],
) -> None:
    assert await _serve_once(make_settings(server={"port": 0, "gc_policy": False})) == (0, 700)
