"""The garbage-collector policy of a server process, applied once it is ready.

CPython's cyclic collector walks every tracked container object of a generation when it collects
it; a full (generation-2) collection walks them all. A ready server holds tens of thousands of
such objects that live as long as the process (modules, classes, pydantic models and validators,
the plugin registry, the runtime), so every full collection under load re-walks them: measured at
1,000 open conversations, one full collection took 103–139 ms inside the load window, which was
the p99 of the first chunk (issue 14).

The policy, applied after start-up (plugins loaded, runtime started, socket bound):

- ``gc.collect()`` then ``gc.freeze()``: start-up garbage is freed, and what survives moves to
  the permanent generation, which collections never walk again. Conversations and turns are still
  collected as before; only the start-up objects are exempt, and they would never be freed anyway.
- The collection thresholds are left at CPython's defaults: raising them was measured (see README
  "Performance") and bought no better tail here, while it lets cyclic garbage pile up longer.

It is applied by ``voice-channel serve`` (:func:`voice_channel.server.serve_until_stopped`) and
is meant for any process that is only a voice-channel server (e.g. a gunicorn worker, from its
post-fork hook). It is not applied when the channel is mounted inside a host's application: that
process's collector is the host's to tune. ``server.gc_freeze: false`` turns it off.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass

import structlog

__all__ = ["GcPolicyResult", "apply_gc_policy"]

log = structlog.get_logger("voice_channel.gc_policy")


@dataclass(frozen=True, slots=True)
class GcPolicyResult:
    """What :func:`apply_gc_policy` did, for the log line and for tests."""

    collected: int
    frozen: int
    thresholds: tuple[int, int, int]


def apply_gc_policy() -> GcPolicyResult:
    """Collect once, then freeze every surviving object out of future collections.

    Call it once the process is ready to serve and before load arrives. Calling it again later
    freezes whatever is alive then (long-lived objects created since); it never unfreezes.
    """
    collected = gc.collect()
    gc.freeze()
    result = GcPolicyResult(collected=collected, frozen=gc.get_freeze_count(), thresholds=gc.get_threshold())
    log.info(
        "gc_policy_applied",
        collected=result.collected,
        frozen=result.frozen,
        thresholds=list(result.thresholds),
    )
    return result
