"""Run ``voice-channel`` with every garbage collection timed; print the pauses at exit.

For ``bench/scale.py --gc-trace``: the command line after the options is the one
``voice-channel`` would get. At exit (SIGTERM shuts the server down gracefully) one JSON line goes
to stderr: every collection as ``[start, generation, pause ms, CPU ms]`` (start on the system-wide
``time.monotonic()`` clock, so the caller can keep those inside its load window), the thresholds
and the number of frozen objects. The CPU time (``time.thread_time``) is what the collection
itself cost, unaffected by other processes taking the core meanwhile. ``--threshold A B C`` sets
``gc.set_threshold`` after the server's GC policy is applied (experiments). On SIGUSR1 it writes one ``gc_objects`` JSON
line: the objects the collector tracks (frozen ones apart) and the most common types among them.
"""

from __future__ import annotations

import atexit
import gc
import json
import signal
import sys
import time
from collections import Counter

from voice_channel.cli import main
from voice_channel.serving import gc_policy, server


def trace() -> None:
    started: list[float] = [0.0, 0.0, 0.0]
    collections: list[tuple[float, int, float, float]] = []

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[:] = time.monotonic(), time.perf_counter(), time.thread_time()
        else:
            pause = (time.perf_counter() - started[1]) * 1e3
            collections.append((started[0], info["generation"], pause, (time.thread_time() - started[2]) * 1e3))

    def report() -> None:
        summary = {"collections": collections, "threshold": gc.get_threshold(), "frozen": gc.get_freeze_count()}
        print("gc_trace " + json.dumps(summary), file=sys.stderr, flush=True)

    def census(signum: int, frame: object) -> None:
        objects = gc.get_objects()
        types = Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in objects)
        census = {"tracked": len(objects), "frozen": gc.get_freeze_count(), "types": types.most_common(40)}
        del objects
        print("gc_objects " + json.dumps(census), file=sys.stderr, flush=True)

    gc.callbacks.append(on_gc)
    signal.signal(signal.SIGUSR1, census)
    atexit.register(report)


if __name__ == "__main__":
    argv = sys.argv[1:]
    if argv[:1] == ["--threshold"]:
        thresholds = [int(x) for x in argv[1:4]]
        argv = argv[4:]
        policy = server.apply_gc_policy

        def policy_then_thresholds() -> gc_policy.GcPolicyResult:
            result = policy()
            gc.set_threshold(*thresholds)
            return result

        server.apply_gc_policy = policy_then_thresholds
    trace()
    sys.argv = ["voice-channel", *argv]
    main()
