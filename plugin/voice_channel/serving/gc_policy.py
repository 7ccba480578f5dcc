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
- The youngest generation's threshold goes from 700 to 10,000 net allocations (the older two
  keep theirs): a turn leaves only a few tracked objects behind, so at 700 the young collections
  ran several times a second and, every tenth, a generation-1 collection walked everything
  young; measured at 1,000 conversations over 20 s, the collector's CPU time fell from
  0.66–0.78 s to 0.18 s and its longest pause from 113–118 ms (a generation-2 collection, still
  walking every conversation's objects) to 51–59 ms (README "Performance"). Cyclic garbage waits
  longer to be freed; at 10,000 objects that is a few megabytes at most.

It is applied by ``voice-channel serve`` (:func:`voice_channel.serving.server.serve_until_stopped`) and
is meant for any process that is only a voice-channel server (e.g. a gunicorn worker, from its
post-fork hook). It is not applied when the channel is mounted inside a host's application: that
process's collector is the host's to tune. ``server.gc_policy: false`` turns it off.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass

import structlog

__all__ = ["YOUNG_THRESHOLD", "GcPolicyResult", "apply_gc_policy"]

log = structlog.get_logger("voice_channel.gc_policy")

#: Net allocations of tracked objects between two collections of the youngest generation.
YOUNG_THRESHOLD = 10_000


@dataclass(frozen=True, slots=True)
class GcPolicyResult:
    """What :func:`apply_gc_policy` did, for the log line and for tests."""

    collected: int
    frozen: int
    thresholds: tuple[int, int, int]


def apply_gc_policy() -> GcPolicyResult:
    """Collect once, freeze every surviving object out of future collections, raise the young threshold.

    Call it once the process is ready to serve and before load arrives. Calling it again later
    freezes whatever is alive then (long-lived objects created since); it never unfreezes.
    """
    collected = gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, oldest)
    result = GcPolicyResult(collected=collected, frozen=gc.get_freeze_count(), thresholds=gc.get_threshold())
    log.info(
        "gc_policy_applied",
        collected=result.collected,
        frozen=result.frozen,
        thresholds=list(result.thresholds),
    )
    return result
