"""``tools/test_summary.py``: the closing summary of ``make test`` over every tier's report."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

from processes import ROOT

SCRIPT = ROOT / "tools" / "test_summary.py"
JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="0" failures="1" skipped="2" tests="5" time="12.5">
<testcase classname="tests.a" name="test_ok" time="0.1"/>
<testcase classname="tests.a" name="test_ok_too" time="0.1"/>
<testcase classname="tests.a" name="test_broken" time="0.1"><failure message="boom">boom</failure></testcase>
<testcase classname="tests.b" name="test_skip" time="0"><skipped type="pytest.skip" message="no GPU here">x</skipped>
</testcase>
<testcase classname="tests.b" name="test_xfail" time="0"><skipped type="pytest.xfail" message="known"/></testcase>
</testsuite></testsuites>
"""


def summary(tmp_path, tiers):  # type: ignore[no-untyped-def]
    result = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path), *tiers], capture_output=True, text=True)
    return result.returncode, result.stdout.splitlines()


def test_counts_every_tier_lists_every_skip_and_ends_with_one_line(tmp_path):
    (tmp_path / "core.xml").write_text(JUNIT)
    (tmp_path / "web.json").write_text(json.dumps({"passed": 8, "failed": 0, "skipped": [], "seconds": 0.5}))
    code, lines = summary(tmp_path, ["web", "core"])
    assert code == 1  # one test failed
    assert "  [core] tests.b::test_skip: no GPU here" in lines
    assert "  [core] tests.a::test_broken (failure)" in lines
    assert lines[-1].strip("= ") == "11 passed, 1 failed, 1 skipped in 13.00s"


def test_a_tier_without_a_report_fails_the_run(tmp_path):
    (tmp_path / "web.json").write_text(json.dumps({"passed": 8, "failed": 0, "skipped": [], "seconds": 0.5}))
    code, lines = summary(tmp_path, ["web", "hermes"])
    assert code == 1
    assert any(line.startswith("hermes") and "did not run" in line for line in lines)
    assert lines[-1].strip("= ") == "8 passed, 1 failed (tiers that did not run: hermes) in 0.50s"


def test_all_green_exits_0():
    spec = importlib.util.spec_from_file_location("test_summary_tool", SCRIPT)
    assert spec is not None and spec.loader is not None
    tool = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = tool  # dataclasses look their module up
    try:
        spec.loader.exec_module(tool)
    finally:
        del sys.modules[spec.name]
    lines, ok = tool.summarise([tool.Tier("web", passed=3, seconds=1.0), tool.Tier("core", passed=2, seconds=2.0)])
    assert ok and lines[-1].strip("= ") == "5 passed, 0 failed in 3.00s"
    assert "skipped: 0" in lines
