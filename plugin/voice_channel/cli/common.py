"""What the commands share: loading plugins and settings, and failing with a clear message."""

from __future__ import annotations

import re
from typing import Any

import click
import pluggy

from voice_channel.logging import setup_logging
from voice_channel.plugins import PluginHooks, PluginManager, get_plugin_manager
from voice_channel.settings import Settings, SettingsError, build_settings_class, load_settings

__all__ = ["config_option", "fail", "header", "load", "nested", "plugin_manager", "setup_logging"]

config_option = click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="YAML or TOML settings file (flags and VOICE_CHANNEL_* variables take precedence).",
)


def fail(message: str) -> click.ClickException:
    """A user error: printed as one clear message, no traceback, exit status 2."""
    error = click.ClickException(message)
    error.exit_code = 2
    return error


#: An HTTP header name (RFC 9110 token).
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def header(value: str, option: str = "--header") -> tuple[str, str]:
    """A ``NAME:VALUE`` option as a header name and value; a name that is no HTTP token, or a value with a line
    break, is a user error (ElevenLabs or the server would refuse the header only later)."""
    name, sep, content = value.partition(":")
    if not sep or not _HEADER_NAME.fullmatch(name.strip()) or any(c in content for c in "\r\n\0"):
        raise fail(f"{option} must look like NAME:VALUE (one line, a name without spaces), got {value!r}")
    return name.strip(), content.strip()


def nested(**flags: Any) -> dict[str, Any]:
    """Turn ``server__port=8000`` style flags into nested overrides, skipping unset ones."""
    overrides: dict[str, Any] = {}
    for key, value in flags.items():
        if value is None:
            continue
        node = overrides
        *parents, leaf = key.split("__")
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return overrides


def plugin_manager() -> PluginManager:
    """The installed plugins; a plugin the host refuses (e.g. a hook wrapper) is a clear error, not a traceback."""
    try:
        return get_plugin_manager()
    except pluggy.PluginValidationError as exc:
        raise fail(f"plugin refused: {exc}") from None


def load(config_file: str | None, overrides: dict[str, Any]) -> tuple[Settings, PluginManager]:
    """Plugins first (they contribute settings sections), then the settings."""
    try:
        pm = plugin_manager()
        settings_cls = build_settings_class(PluginHooks(pm).settings_sections())
        settings = load_settings(config_file=config_file, overrides=overrides, settings_cls=settings_cls)
    except SettingsError as exc:
        raise fail(str(exc)) from None
    return settings, pm
