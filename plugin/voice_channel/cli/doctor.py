"""``voice-channel doctor``: check a deployment (key, engine, ws_url, shared secret, reachability)."""

from __future__ import annotations

import asyncio
import json
import sys

import click

from voice_channel.cli.common import config_option, load
from voice_channel.elevenlabs.doctor import run_checks

MARKS = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL", "skip": "skip"}


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@config_option
def doctor(as_json: bool, config_file: str | None) -> None:
    """Check that ElevenLabs, the Speech Engine and this server fit together. Exit status 1 if anything fails."""
    settings, _ = load(config_file, {})
    checks = asyncio.run(run_checks(settings))
    failed = any(check.status == "fail" for check in checks)
    if as_json:
        click.echo(json.dumps({"ok": not failed, "checks": [c.as_dict() for c in checks]}, indent=2))
    else:
        for check in checks:
            click.echo(f"{MARKS[check.status]}  {check.name:<14} {check.detail}")
            if check.fix and check.status in ("fail", "warn"):
                click.echo(f"{'':20}fix: {check.fix}")
        click.echo("All checks passed." if not failed else "Some checks failed.")
    sys.exit(1 if failed else 0)
