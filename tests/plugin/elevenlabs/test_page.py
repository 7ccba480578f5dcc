"""Serving the page: routes, headers, the fixed file list, a missing build, mounting under a prefix."""

from __future__ import annotations

import re

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from processes import require
from voice_channel.app import create_app
from voice_channel.elevenlabs import page as ui
from voice_channel.plugins import get_plugin_manager
from voice_channel.settings import Settings, SettingsError


@pytest.fixture
def _bundle() -> None:
    require(not ui.bundle_missing(), "the page is not built (make web)")


needs_bundle = pytest.mark.usefixtures("_bundle")


async def fetch(server: TestServer, path: str) -> tuple[int, bytes, dict[str, str]]:
    async with aiohttp.ClientSession() as session, session.get(server.make_url(path)) as response:
        return response.status, await response.read(), dict(response.headers)


async def test_the_page_is_off_unless_enabled(start_channel):
    channel = await start_channel()
    assert (await fetch(channel.server, "/"))[0] == 404
    assert (await fetch(channel.server, "/static/app.js"))[0] == 404
    assert (await fetch(channel.server, "/api/token"))[0] == 403  # the token endpoint is always there


@needs_bundle
async def test_the_page_and_its_files_with_safe_headers(start_channel):
    channel = await start_channel(ui={"enabled": True})
    status, body, headers = await fetch(channel.server, "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "script-src 'self' blob: data:" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff" and headers["Referrer-Policy"] == "no-referrer"
    assert b'<button id="start"' in body
    # Every URL in the page is relative, so that it works under a mount prefix.
    assert re.findall(rb'(?:src|href)="(/[^"]*)"', body) == []
    for name, kind in ui.STATIC_FILES.items():
        status, _, headers = await fetch(channel.server, f"/static/{name}")
        assert status == 200 and headers["Content-Type"].startswith(kind), name
    for path in ("/static/index.html", "/static/..%2Fui.py", "/static/nope.js", "/static/"):
        assert (await fetch(channel.server, path))[0] == 404, path


@needs_bundle
def test_the_bundle_never_reaches_for_a_cdn():
    bundle = (ui.STATIC_DIR / "app.js").read_text(encoding="utf-8")
    assert "cdn.jsdelivr.net" not in bundle
    assert '"static/libsamplerate.worklet.js"' in bundle
    licences = (ui.STATIC_DIR / "THIRD_PARTY_LICENSES.txt").read_text(encoding="utf-8")
    assert "@elevenlabs/client" in licences and "livekit-client" in licences


async def test_a_missing_build_is_explained_on_the_page(start_channel, monkeypatch, tmp_path):
    (tmp_path / "index.html").write_text("<!doctype html>")
    monkeypatch.setattr(ui, "STATIC_DIR", tmp_path)
    channel = await start_channel(ui={"enabled": True})
    status, body, _ = await fetch(channel.server, "/")
    assert status == 503 and b"make web" in body


@needs_bundle
async def test_mounted_under_a_prefix(make_settings):
    host = web.Application()
    host.add_subapp(
        "/voice", create_app(make_settings(ui={"enabled": True}), get_plugin_manager(load_entrypoints=False))
    )
    server = TestServer(host, host="127.0.0.1")
    await server.start_server()
    try:
        assert (await fetch(server, "/voice/"))[0] == 200
        assert (await fetch(server, "/voice/static/app.js"))[0] == 200
        assert (await fetch(server, "/voice/api/token"))[0] == 403
    finally:
        await server.close()


@pytest.mark.parametrize("path", ["/", "/api/token", "/healthz", "/static/x"])
def test_the_websocket_path_cannot_take_another_route(path):
    with pytest.raises(SettingsError, match=r"server\.path"):
        create_app(Settings(ui={"enabled": True}, server={"path": path}), get_plugin_manager(load_entrypoints=False))
