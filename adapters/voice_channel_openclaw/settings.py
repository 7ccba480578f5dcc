"""Settings of the ``openclaw`` runtime: section ``openclaw`` (``VOICE_CHANNEL_OPENCLAW__*``)."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from voice_channel import Secret

__all__ = ["DEFAULT_DEVICE_KEY_PATH", "OpenClawSettings"]

#: Where the device identity is kept when ``openclaw.device_key_path`` is not set.
DEFAULT_DEVICE_KEY_PATH = Path("~/.config/voice-channel/openclaw-device.json")


class OpenClawSettings(BaseModel):
    """OpenClaw Gateway used by runtime `openclaw`."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    gateway_url: str = Field("ws://127.0.0.1:18789", description="Gateway WebSocket URL (ws:// or wss://).")
    token: Secret | None = Field(
        None,
        description="Gateway token (gateway.auth.token); env OPENCLAW_GATEWAY_TOKEN also works.",
        json_schema_extra={"sensitive": True},
    )
    password: Secret | None = Field(
        None,
        description="Gateway password, for gateway.auth.mode password; env OPENCLAW_GATEWAY_PASSWORD also works.",
        json_schema_extra={"sensitive": True},
    )
    agent_id: str = Field("main", description="Agent that answers; sessions are agent:<id>:elevenlabs:<conversation>.")
    device_key_path: str | None = Field(
        None,
        description="File holding this client's Ed25519 device key (created 0600 if missing). "
        "Default: ~/.config/voice-channel/openclaw-device.json.",
    )
    display_name: str = Field(
        "voice-channel", min_length=1, max_length=64, description="Client name the Gateway shows."
    )
    connect_timeout_s: float = Field(10.0, gt=0, le=120, description="Time allowed for one connect handshake.")
    request_timeout_s: float = Field(15.0, gt=0, le=300, description="Time allowed for a Gateway request's answer.")
    reconnect_initial_s: float = Field(0.5, gt=0, le=60, description="First reconnect delay; doubles up to the max.")
    reconnect_max_s: float = Field(30.0, gt=0, le=600, description="Longest reconnect delay.")
    run_timeout_s: float = Field(
        120.0,
        gt=0,
        le=86_400,
        description="Longest agent run for one turn (the Gateway's own default is 48 h): sent as chat.send's"
        " timeoutMs; a run with no end past it and request_timeout_s is aborted and the caller hears the apology.",
    )
    unavailable_wait_s: float = Field(
        10.0, ge=0, le=120, description="How long a turn waits for a (re)connecting Gateway before apologising."
    )

    @field_validator("gateway_url")
    @classmethod
    def _ws_url(cls, value: str) -> str:
        value = value.strip()
        if not value.startswith(("ws://", "wss://")):
            raise ValueError("must be a ws:// or wss:// URL, e.g. ws://127.0.0.1:18789")
        return value

    @field_validator("agent_id")
    @classmethod
    def _agent_id(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}", value):
            raise ValueError("letters, digits, '-' and '_' only, e.g. main")
        return value
