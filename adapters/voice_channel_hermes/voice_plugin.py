"""The ``voice_channel`` plugin of this package: the ``hermes`` runtime and the ``hermes`` settings.

Importable without Hermes (``voice-channel plugins`` lists it anywhere). The runtime only works
inside Hermes's gateway, where the adapter registers a bound copy of it
(:class:`~voice_channel_hermes.runtime.AdapterRuntimePlugin`); started any other way, e.g.
``voice-channel serve --runtime hermes``, it refuses with a message saying how to run it.
"""

from __future__ import annotations

from collections.abc import Callable

from voice_channel import Settings, SettingsError, hookimpl
from voice_channel_hermes import PLATFORM, PLUGIN_NAME
from voice_channel_hermes.runtime import RUNTIME_DESCRIPTION
from voice_channel_hermes.settings import HermesSettings

__all__ = ["OUTSIDE_HERMES", "voice_channel_register_runtimes", "voice_channel_register_settings"]

OUTSIDE_HERMES = (
    "runtime 'hermes' runs inside Hermes Agent's gateway, not in `voice-channel serve`: install voice-channel with "
    f"its 'hermes' extra into Hermes's environment, run `hermes plugins enable {PLUGIN_NAME}`, configure "
    f"platforms.{PLATFORM} in Hermes's config.yaml and start `hermes gateway` (see the README, 'Use with Hermes Agent')"
)


def _outside_hermes(settings: Settings) -> None:
    raise SettingsError(OUTSIDE_HERMES)


@hookimpl
def voice_channel_register_runtimes(register: Callable[..., None]) -> None:
    register("hermes", _outside_hermes, RUNTIME_DESCRIPTION)


@hookimpl
def voice_channel_register_settings(register: Callable[..., None]) -> None:
    register("hermes", HermesSettings)
