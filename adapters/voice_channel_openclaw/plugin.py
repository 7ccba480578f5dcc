"""The ``openclaw`` runtime plugin: registered through the ``voice_channel`` entry-point group.

The runtime module (and with it ``cryptography``, extra ``openclaw``) is imported by the
factory, so listing plugins works without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from voice_channel import hookimpl
from voice_channel.extras import install_hint
from voice_channel_openclaw.settings import OpenClawSettings

if TYPE_CHECKING:
    from voice_channel import Runtime, Settings


def _factory(settings: Settings) -> Runtime:
    try:
        from voice_channel_openclaw.runtime import OpenClawRuntime
    except ImportError as exc:  # pragma: no cover - depends on the installation
        from voice_channel import SettingsError

        raise SettingsError(f"runtime 'openclaw' needs {exc.name}: {install_hint('openclaw')}") from None
    return OpenClawRuntime(settings)


@hookimpl
def voice_channel_register_runtimes(register):  # type: ignore[no-untyped-def]
    register("openclaw", _factory, "OpenClaw Gateway (WebSocket operator client, spoken exec approvals).")


@hookimpl
def voice_channel_register_settings(register):  # type: ignore[no-untyped-def]
    register("openclaw", OpenClawSettings)
