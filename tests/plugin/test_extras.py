"""Every hint to install an extra says something that works: voice-channel is not on PyPI (README: Install)."""

from __future__ import annotations

import re

import pytest

from processes import ROOT
from voice_channel.app import resolve_runtime
from voice_channel.elevenlabs import shared_ratelimit
from voice_channel.extras import install_hint
from voice_channel.plugins import PluginHooks, get_plugin_manager
from voice_channel.settings import Settings, SettingsError

#: ``pip install 'voice-channel[...]'`` (or without quotes): a name PyPI does not have.
_FROM_PYPI = re.compile(r"""pip install ['"]?voice[-_]channel\[""")


def test_the_hint_names_the_extra_and_commands_that_work() -> None:
    hint = install_hint("scale")
    assert "pip install '.[scale]'" in hint and "wheel with [scale]" in hint and "README: Install" in hint


def test_nothing_shipped_tells_users_to_install_from_pypi() -> None:
    shipped = [
        ROOT / "README.md",
        *sorted((ROOT / "plugin").rglob("*.py")),
        *sorted((ROOT / "adapters").rglob("*.py")),
        *sorted(path for path in (ROOT / "manifests").rglob("*") if path.is_file()),
        *sorted(path for path in (ROOT / "deploy").rglob("*") if path.is_file()),
    ]
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in shipped
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if _FROM_PYPI.search(line) and "would find nothing" not in line
    ]
    assert offenders == []


def test_an_unknown_runtime_error_gives_the_working_hint() -> None:
    hooks = PluginHooks(get_plugin_manager(load_entrypoints=False))
    with pytest.raises(SettingsError) as raised:
        resolve_runtime(Settings(runtime="nonexistent"), hooks)
    assert install_hint("openclaw") in str(raised.value)


def test_redis_configured_without_its_client_names_the_scale_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_redis(name, *args, **kwargs):  # type: ignore[no-untyped-def]
        if name == "redis" or name.startswith("redis."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_redis)
    with pytest.raises(SettingsError) as raised:
        shared_ratelimit._redis_module()
    assert str(raised.value) == f"setting 'redis.url' needs the Redis client: {install_hint('scale')}"
