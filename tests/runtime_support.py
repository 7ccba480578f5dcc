"""Helpers for runtime adapter tests (the fixtures are in tests/adapters/conftest.py)."""

from __future__ import annotations

from typing import Any

from voice_channel.plugins import PluginHooks, get_plugin_manager
from voice_channel.settings import Settings, build_settings_class


def adapter_settings(plugins: list[Any], **overrides: Any) -> Settings:
    """Settings built the way the CLI builds them: with the sections these plugins register."""
    pm = get_plugin_manager(load_entrypoints=False, extra_plugins=plugins)
    return build_settings_class(PluginHooks(pm).settings_sections())(**overrides)
