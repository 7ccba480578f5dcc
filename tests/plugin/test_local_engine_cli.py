"""``voice-channel local-engine`` flags reach the engine's configuration (no models loaded: serving is replaced)."""

from __future__ import annotations

import importlib
from typing import Any

from click.testing import CliRunner

from voice_channel.cli import cli

command = importlib.import_module("voice_channel.cli.local_engine")


def test_ignore_terms_reach_the_local_engine_config(monkeypatch):
    seen: list[Any] = []

    async def serve(config: Any, **_: Any) -> None:
        seen.append(config)

    monkeypatch.setattr(command, "serve_engine", serve)
    args = ["local-engine", "--channel-url", "ws://127.0.0.1:1/ws", "--api-key", "sk_local_test"]
    result = CliRunner().invoke(cli, [*args, "--ignore-term", "uh-huh", "--ignore-term", "gotcha"])
    assert result.exit_code == 0, result.output
    assert seen[0].interruption_ignore_terms == ["uh-huh", "gotcha"]
    assert CliRunner().invoke(cli, args).exit_code == 0
    assert seen[1].interruption_ignore_terms == []
