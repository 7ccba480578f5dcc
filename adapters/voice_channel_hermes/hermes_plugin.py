"""``register(ctx)``: what this plugin adds to Hermes.

* the platform ``elevenlabs_voice`` (:class:`~voice_channel_hermes.adapter.ElevenLabsVoiceAdapter`),
  with the voice platform hint for the system prompt and Hermes's allowlist variables
  ``ELEVENLABS_VOICE_ALLOWED_USERS`` / ``ELEVENLABS_VOICE_ALLOW_ALL_USERS`` (used only when callers
  are not authorized upstream, see ``hermes.trust_voice_callers``);
* the ``pre_tool_call`` hook of :class:`~voice_channel_hermes.policy.ToolPolicy`;
* the ``pre_llm_call`` and ``on_session_end`` hooks of :class:`~voice_channel_hermes.runs.RunTracker`
  (when an agent run of a call has really ended), and its ``api_request_error`` and ``post_api_request`` hooks
  (whether the run's latest LLM request failed: Hermes's error text is then not spoken);
* the ``pre_tool_call`` and ``post_tool_call`` hooks of :class:`~voice_channel_hermes.tools.ToolEvents`
  (a call's tool runs, for the channel's progress speech);
* voice defaults for Hermes's per-platform display settings (token streaming on, tool progress,
  interim messages and busy-ack details off), which explicit ``display.platforms.elevenlabs_voice``
  settings in ``config.yaml`` override.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Any

from voice_channel_hermes import PLATFORM
from voice_channel_hermes.policy import ToolPolicy
from voice_channel_hermes.prompting import PLATFORM_HINT
from voice_channel_hermes.runs import RunTracker
from voice_channel_hermes.tools import ToolEvents

__all__ = ["VOICE_DISPLAY_DEFAULTS", "register_plugin"]

logger = logging.getLogger(__name__)

#: Hermes's display settings that suit a call (resolution: config.yaml's per-platform, then global
#: display settings, then these platform defaults).
VOICE_DISPLAY_DEFAULTS: dict[str, Any] = {
    "streaming": True,
    "tool_progress": "off",
    "interim_assistant_messages": False,
    "long_running_notifications": False,
    "busy_ack_detail": False,
    "show_reasoning": False,
    "thinking_progress": False,
    "tool_preview_length": 0,
}


def _requirements_met() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in ("aiohttp", "elevenlabs", "voice_channel"))


def _install_display_defaults() -> None:
    # Hermes keeps per-platform display defaults in a table with no registration API for plugin
    # platforms; entries are only added, never changed, and a missing table is not an error.
    try:
        from gateway import display_config

        table = display_config._PLATFORM_DEFAULTS
    except (ImportError, AttributeError):  # pragma: no cover - depends on Hermes's version
        logger.warning("%s: Hermes has no per-platform display defaults; configure streaming yourself", PLATFORM)
        return
    table.setdefault(PLATFORM, dict(VOICE_DISPLAY_DEFAULTS))


def validate_platform_config(config: Any) -> bool:
    """Hermes's ``validate_config`` for the platform: the channel's settings load and a key is set.

    A platform whose config does not validate is not created, and Hermes goes on without it (with
    other platforms, or for cron jobs when it was the only one). Failing in ``connect`` instead is a
    non-retryable startup error, which stops the whole gateway when voice is its only platform.
    """
    from voice_channel import SettingsError
    from voice_channel.plugins import PluginHooks, get_plugin_manager
    from voice_channel_hermes.runtime import AdapterRuntimePlugin
    from voice_channel_hermes.settings import channel_settings

    pm = get_plugin_manager(blocked=("hermes",), extra_plugins=(AdapterRuntimePlugin(_no_chat),))
    try:
        channel_settings(getattr(config, "extra", None), PluginHooks(pm))
    except (SettingsError, ValueError) as exc:
        logger.error("%s", exc)
        return False
    return True


def _no_chat(context: Any) -> Any:  # pragma: no cover - the settings check opens no conversation
    raise RuntimeError("validation only")


def register_plugin(ctx: Any) -> None:
    """Register the platform, the tool policy hook and the display defaults with Hermes."""
    policy = ToolPolicy()
    runs = RunTracker()
    tools = ToolEvents()

    def adapter_factory(config: Any) -> Any:
        from voice_channel_hermes.adapter import ElevenLabsVoiceAdapter

        return ElevenLabsVoiceAdapter(config, policy, runs, tools)

    ctx.register_platform(
        name=PLATFORM,
        label="ElevenLabs Voice",
        adapter_factory=adapter_factory,
        check_fn=_requirements_met,
        validate_config=validate_platform_config,
        required_env=["ELEVENLABS_API_KEY"],
        # The wording of voice_channel.extras.install_hint, written out: this module loads before the check
        # that voice_channel is installed at all.
        install_hint="install the 'hermes' extra into Hermes's environment: pip install '.[hermes]' in a "
        "voice-channel checkout, or the built wheel with [hermes] (README: Install)",
        allowed_users_env="ELEVENLABS_VOICE_ALLOWED_USERS",
        allow_all_env="ELEVENLABS_VOICE_ALLOW_ALL_USERS",
        max_message_length=0,
        emoji="🎙️",
        allow_update_command=False,
        platform_hint=PLATFORM_HINT,
    )
    ctx.register_hook("pre_tool_call", policy)
    ctx.register_hook("pre_llm_call", runs.on_run_start)
    ctx.register_hook("on_session_end", runs.on_run_end)
    ctx.register_hook("api_request_error", runs.on_api_error)
    ctx.register_hook("post_api_request", runs.on_api_ok)
    ctx.register_hook("pre_tool_call", tools.on_start)
    ctx.register_hook("post_tool_call", tools.on_end)
    _install_display_defaults()
