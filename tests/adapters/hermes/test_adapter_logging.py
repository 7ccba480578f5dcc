"""Inside Hermes, the channel's structured logs go to Hermes's own logging, secrets masked."""

from __future__ import annotations

import logging

import structlog

from voice_channel.settings import build_settings_class
from voice_channel_hermes.adapter import _configure_logging
from voice_channel_hermes.settings import HermesSettings, load_hermes_settings


def test_channel_logs_reach_stdlib_logging_without_the_api_key(caplog):
    secret = "sk_hermes_logging_secret_0123"
    settings = load_hermes_settings(
        {"elevenlabs": {"api_key": secret}}, build_settings_class({"hermes": HermesSettings})
    )
    structlog.reset_defaults()
    assert not structlog.is_configured()
    _configure_logging(settings, cache=False)
    with caplog.at_level(logging.INFO, logger="voice_channel.conversation"):
        structlog.get_logger("voice_channel.conversation").info(
            "turn_failed", conversation_id="conv-9", detail=f"header was {secret}"
        )
    record = next(r for r in caplog.records if r.name == "voice_channel.conversation")
    assert "turn_failed" in record.getMessage() and "conv-9" in record.getMessage()
    assert secret not in caplog.text and "[redacted]" in caplog.text
