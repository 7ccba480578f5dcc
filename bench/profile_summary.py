"""Summarise py-spy collapsed stacks (``bench/scale.py --profile``): where the server's CPU goes.

Samples waiting in the event loop's ``select`` are idle and left out (counted apart). Three views
of the busy samples: self time by package or voice_channel module (the frame that
was running), time inclusive of callees by voice_channel module (each sample counted once per
module on its stack), and the hottest functions by self time.

Run: ``.venv/bin/python bench/profile_summary.py /tmp/prof-voice-channel-1000.txt``
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^:()]+)(?::\d+)?\)$")


def where(frame: str) -> tuple[str, str]:
    """(owner, function) of a ``func (path/file.py:line)`` frame; owner is a package or voice_channel module."""
    match = _FRAME.match(frame)
    if not match:
        return "?", frame
    parts = match["file"].removesuffix(".py").split("/")
    if parts[0] == "voice_channel":
        owner = ".".join(parts[:3] if len(parts) > 2 and parts[1] in ("speech", "runtimes") else parts[:2])
    else:
        owner = parts[0]
    return owner, f"{match['func']} ({match['file']})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stacks", type=Path)
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    functions: Counter[str] = Counter()
    total = idle = 0
    for line in args.stacks.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        frames = [where(f) for f in stack.split(";")]
        if frames[-1][0] == "selectors":
            idle += n
            continue
        total += n
        owner, function = frames[-1]
        own[owner] += n
        functions[function] += n
        for module in {o for o, _ in frames if o.startswith("voice_channel.") and o != "voice_channel.cli"}:
            inclusive[module] += n
    print(f"{total} busy samples ({idle} more idle in select left out)")
    for title, counter in (
        ("self time by package / module", own),
        ("inclusive time by voice_channel module", inclusive),
        ("hottest functions (self)", functions),
    ):
        print(f"\n{title}:")
        for name, n in counter.most_common(args.top):
            print(f"  {100 * n / total:5.1f} %  {name}")


if __name__ == "__main__":
    main()
