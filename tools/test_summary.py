"""Summarise every tier of ``make test``: counts per tier, every skip with its reason, one closing line.

Usage: ``python tools/test_summary.py REPORTS_DIR TIER...``. A pytest tier leaves ``TIER.xml`` (JUnit XML,
``--junitxml``), the node tier ``TIER.json`` (``web/summary-reporter.mjs``). A tier without a report did not run
to the end, and counts as failed. The last line reads like pytest's: ``N passed, N failed[, N skipped] in Ts``;
the exit status is 1 when anything failed or did not run.
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Tier:
    name: str
    passed: int = 0
    failed: int = 0
    seconds: float = 0.0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    ran: bool = True


def read_junit(name: str, path: Path) -> Tier:
    tier = Tier(name)
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    for suite in suites:
        tier.seconds += float(suite.get("time") or 0)
        for case in suite.iter("testcase"):
            test = f"{case.get('classname', '')}::{case.get('name', '')}"
            outcome = next((child for child in case if child.tag in ("failure", "error", "skipped")), None)
            if outcome is None:
                tier.passed += 1
            elif outcome.tag == "skipped":
                if outcome.get("type") == "pytest.xfail":
                    tier.passed += 1  # an expected failure that failed, as expected
                else:
                    tier.skipped.append((test, outcome.get("message") or ""))
            else:
                tier.failed += 1
                tier.failures.append(f"{test} ({outcome.tag})")
    return tier


def read_node(name: str, path: Path) -> Tier:
    data = json.loads(path.read_text())
    skipped = [(item["test"], item["reason"]) for item in data.get("skipped", [])]
    return Tier(name, data["passed"], data["failed"], float(data.get("seconds", 0)), skipped)


def read_tier(reports: Path, name: str) -> Tier:
    if (reports / f"{name}.xml").exists():
        return read_junit(name, reports / f"{name}.xml")
    if (reports / f"{name}.json").exists():
        return read_node(name, reports / f"{name}.json")
    return Tier(name, ran=False)


def summarise(tiers: list[Tier]) -> tuple[list[str], bool]:
    """The summary's lines, and whether everything passed."""
    lines = ["", " make test: every tier ".center(78, "=")]
    lines.append(f"{'tier':<12}{'passed':>8}{'failed':>8}{'skipped':>9}{'time':>10}")
    for tier in tiers:
        if tier.ran:
            row = f"{tier.passed:>8}{tier.failed:>8}{len(tier.skipped):>9}{tier.seconds:>9.1f}s"
        else:
            row = "   did not run to the end (see its output above)"
        lines.append(f"{tier.name:<12}{row}")
    skipped = [(tier.name, test, reason) for tier in tiers for test, reason in tier.skipped]
    lines.append(f"skipped: {len(skipped)}" + (":" if skipped else ""))
    lines += [f"  [{tier}] {test}: {reason}" for tier, test, reason in skipped]
    failures = [f"  [{tier.name}] {failure}" for tier in tiers for failure in tier.failures]
    if failures:
        lines += ["failed:", *failures]
    missing = [tier.name for tier in tiers if not tier.ran]
    passed = sum(tier.passed for tier in tiers)
    failed = sum(tier.failed for tier in tiers) + len(missing)
    seconds = sum(tier.seconds for tier in tiers)
    closing = f"{passed} passed, {failed} failed"
    if skipped:
        closing += f", {len(skipped)} skipped"
    if missing:
        closing += f" (tiers that did not run: {', '.join(missing)})"
    lines.append(f" {closing} in {seconds:.2f}s ".center(78, "="))
    return lines, failed == 0


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    reports = Path(argv[0])
    lines, ok = summarise([read_tier(reports, name) for name in argv[1:]])
    print("\n".join(lines))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
