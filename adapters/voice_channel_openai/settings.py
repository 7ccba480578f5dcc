"""Settings of the ``openai`` runtime: section ``openai`` (``VOICE_CHANNEL_OPENAI__*``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from voice_channel import Secret

__all__ = ["OpenAISettings"]


class OpenAISettings(BaseModel):
    """OpenAI-compatible chat server used by runtime `openai`."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    base_url: str = Field(
        "http://127.0.0.1:8642/v1",
        description="Base URL of the OpenAI-compatible API, without /chat/completions (default: Hermes API server).",
    )
    model: str = Field("hermes-agent", min_length=1, description="Model name sent with every request.")
    api_key: Secret | None = Field(
        None,
        description="Bearer token for the server (e.g. Hermes API_SERVER_KEY); none is sent if unset.",
        json_schema_extra={"sensitive": True},
    )
    system_prompt: str | None = Field(
        None,
        description="Replaces the built-in voice style prompt; the caller-speech boundary rule is always appended.",
    )
    temperature: float | None = Field(None, ge=0, le=2, description="Sampling temperature; server default if unset.")
    max_tokens: int | None = Field(None, ge=1, description="Longest reply in tokens; server default if unset.")
    max_history_messages: int = Field(
        40, ge=0, le=1000, description="Earlier messages of the conversation sent with each request (newest)."
    )
    connect_timeout_s: float = Field(10.0, gt=0, le=300, description="Time allowed to connect to the server.")
    read_timeout_s: float = Field(
        60.0, gt=0, le=3600, description="Longest silence from the server, the wait for the first token included."
    )
    total_timeout_s: float = Field(300.0, gt=0, le=86400, description="Longest whole reply.")

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL, e.g. http://127.0.0.1:8642/v1")
        if value.endswith("/chat/completions"):
            raise ValueError("give the base URL without /chat/completions, e.g. http://127.0.0.1:8642/v1")
        return value
