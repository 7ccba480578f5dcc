"""Settings of the Hermes adapter, and loading the voice channel's settings inside Hermes.

Inside the gateway, the voice channel reads the same settings as ``voice-channel serve``, from
(highest priority first) ``VOICE_CHANNEL_*`` variables, ``ELEVENLABS_API_KEY`` /
``ELEVENLABS_SPEECH_ENGINE_ID``, then ``platforms.elevenlabs_voice.extra`` in Hermes's
``config.yaml`` (the place a config file takes standalone), then defaults. Environment over file,
as everywhere else in the channel and in Hermes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from voice_channel import Settings, SettingsError
from voice_channel.plugins import PluginHooks
from voice_channel.settings import build_settings_class, load_settings
from voice_channel_hermes import PLATFORM

__all__ = ["DEFAULT_CONFIRM_TOOLS", "NO_KEY", "HermesSettings", "channel_settings", "load_hermes_settings"]

#: Why the platform does not start without an API key, and the fixes that work inside Hermes
#: (``voice-channel serve``'s ``--insecure-no-auth`` flag does not exist here).
NO_KEY = (
    f"{PLATFORM}: the ElevenLabs API key is missing: set ELEVENLABS_API_KEY in Hermes's environment or in "
    f"$HERMES_HOME/.env (or elevenlabs.api_key under platforms.{PLATFORM}.extra in config.yaml); it verifies that "
    "calls really come from ElevenLabs. To run without that check (only behind an IP allowlist or a shared-secret "
    f"header), set auth: {{insecure_no_auth: true}} under platforms.{PLATFORM}.extra, or "
    "VOICE_CHANNEL_AUTH__INSECURE_NO_AUTH=true. The voice platform is not started; the rest of the gateway runs on."
)

#: Hermes tools that change something outside the conversation: each call needs the caller's spoken
#: yes. ``terminal`` is not listed: Hermes's own dangerous-command approval already asks for the
#: commands that destroy or leak (and asking for every ``ls`` would make a call unusable).
DEFAULT_CONFIRM_TOOLS: tuple[str, ...] = (
    "write_file",
    "patch",
    "execute_code",
    "process",
    "delegate_task",
    "send_message",
    "cronjob",
    "skill_manage",
    "ha_call_service",
    "computer_use",
    "browser_click",
    "browser_type",
    "browser_press",
    "browser_cdp",
    "discord",
    "discord_admin",
    "kanban_create",
    "kanban_complete",
    "kanban_block",
    "kanban_unblock",
    "kanban_comment",
    "kanban_link",
    "kanban_attach",
    "kanban_attach_url",
    "project_create",
    "feishu_drive_add_comment",
    "feishu_drive_reply_comment",
    "yb_send_dm",
    "yb_send_sticker",
)

#: Keys the gateway adds to every platform's ``extra`` itself; not voice channel settings.
_GATEWAY_EXTRA_KEYS = frozenset({"group_sessions_per_user", "thread_sessions_per_user"})


class HermesSettings(BaseModel):
    """Hermes Agent adapter (used when the channel runs inside Hermes's gateway)."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    confirm_tools: list[str] = Field(
        default_factory=lambda: list(DEFAULT_CONFIRM_TOOLS),
        description="Hermes tools whose every call needs the caller's spoken yes (default: those changing state "
        "outside the conversation).",
    )
    trust_voice_callers: bool = Field(
        True,
        description="Treat callers as authorized by Hermes, since ElevenLabs' JWT was verified; off (or with "
        "auth.insecure_no_auth) Hermes's ELEVENLABS_VOICE_ALLOWED_USERS allowlist applies to hermes.user_id.",
    )
    user_id: str = Field("voice-caller", min_length=1, description="Hermes user id of voice callers.")
    user_name: str = Field("Voice caller", min_length=1, description="Hermes user name of voice callers.")
    prewarm: bool = Field(
        True,
        description="Build a throwaway Hermes agent when the platform starts (imports, tools, lazy installs), so "
        "the first call does not wait for it; /readyz answers 503 until it is done.",
    )
    stop_timeout_s: float = Field(
        1.5,
        gt=0,
        le=30,
        description="How long an interruption waits for Hermes to stop the old run (keep below turn.cancel_grace_s).",
    )

    @field_validator("confirm_tools")
    @classmethod
    def _strip_names(cls, value: list[str]) -> list[str]:
        return sorted({name.strip() for name in value if name.strip()})


def load_hermes_settings(extra: Mapping[str, Any] | None, settings_cls: type[Settings]) -> Settings:
    """The channel's settings, with ``platforms.elevenlabs_voice.extra`` as the config file.

    ``runtime`` is always ``hermes``: inside the gateway, Hermes is the runtime.

    :raises SettingsError: a setting is invalid; the message names the key.
    """
    data = {key: value for key, value in (extra or {}).items() if key not in _GATEWAY_EXTRA_KEYS}
    data.pop("runtime", None)

    try:
        return load_settings(settings_cls=settings_cls, config_data=data, overrides={"runtime": "hermes"})
    except SettingsError as exc:
        raise SettingsError(
            f"{PLATFORM}: {exc}\n(set them under platforms.{PLATFORM}.extra in Hermes's config.yaml,"
            " or with the VOICE_CHANNEL_* variables)"
        ) from None


def channel_settings(extra: Mapping[str, Any] | None, hooks: PluginHooks) -> Settings:
    """The channel's settings inside Hermes, checked as the platform needs them (an API key, or
    ``auth.insecure_no_auth``). Used both by the platform's ``validate_config`` and by ``connect``.

    :raises SettingsError: a setting is invalid or the key is missing; the message says how to fix it.
    """
    settings = load_hermes_settings(extra, build_settings_class(hooks.settings_sections()))
    if settings.elevenlabs.api_key is None and not settings.auth.insecure_no_auth:
        raise SettingsError(NO_KEY)
    return settings
