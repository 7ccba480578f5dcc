"""pluggy markers. One name serves as import package, pluggy project and entry-point group."""

from __future__ import annotations

import pluggy

PROJECT = "voice_channel"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)
