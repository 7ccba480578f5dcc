"""The browser page (``ui.enabled``): ``/`` and a fixed set of files under ``/static/``.

``static/index.html`` and ``static/page.css`` are written by hand; ``static/app.js`` (our ``web/src`` code with
``@elevenlabs/client`` bundled in), ``libsamplerate.worklet.js`` and ``THIRD_PARTY_LICENSES.txt`` are built from
``web/`` by ``make web`` and never edited. Every URL in the page is relative, so the page also works when the
channel is mounted under a prefix (open ``/voice/``, with the trailing slash).
"""

from __future__ import annotations

from pathlib import Path

import structlog
from aiohttp import web

__all__ = ["STATIC_DIR", "add_ui_routes", "bundle_missing"]

log = structlog.get_logger("voice_channel.ui")

STATIC_DIR = Path(__file__).parent.parent / "static"
#: What ``/static/`` serves, and nothing else.
STATIC_FILES = {
    "app.js": "text/javascript",
    "page.css": "text/css",
    "libsamplerate.worklet.js": "text/javascript",
    "THIRD_PARTY_LICENSES.txt": "text/plain",
}
BUILT_FILES = ("app.js", "libsamplerate.worklet.js")

# The page runs our script only; the client library loads its audio worklets from blob:/data: URLs; it connects
# to ElevenLabs or LiveKit over wss (or a local stand-in over ws); nobody may frame a page that holds a microphone.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self' blob: data:",
        "style-src 'self'",
        "img-src 'self' data:",
        "media-src 'self' blob: mediastream:",
        "connect-src 'self' https: wss: ws:",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'none'",
    ]
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "microphone=(self)",
    "Cache-Control": "no-cache",
}

NOT_BUILT = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Voice page not built</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,"></head>
<body><h1>The voice page is not built</h1><p>Its script is missing from this installation. In a source checkout,
run <code>make web</code> (it needs Node.js and npm), then reload this page.</p></body></html>"""


def bundle_missing() -> list[str]:
    """The built files that are not there (empty when the page can work)."""
    return [name for name in BUILT_FILES if not (STATIC_DIR / name).is_file()]


def add_ui_routes(app: web.Application) -> None:
    missing = bundle_missing()  # checked once: the files do not change under a running server
    if missing:
        log.error("ui_not_built", missing=missing, fix="run `make web` (needs Node.js and npm)")

    async def index(request: web.Request) -> web.StreamResponse:
        if missing:
            return web.Response(text=NOT_BUILT, status=503, content_type="text/html", headers=PAGE_HEADERS)
        return web.FileResponse(STATIC_DIR / "index.html", headers={**PAGE_HEADERS, "Content-Type": "text/html"})

    app.router.add_get("/", index)
    app.router.add_get("/static/{name}", static_file)


async def static_file(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    content_type = STATIC_FILES.get(name)
    if content_type is None:
        raise web.HTTPNotFound()
    headers = {
        "Content-Type": f"{content_type}; charset=utf-8",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-cache",
    }
    return web.FileResponse(STATIC_DIR / name, headers=headers)  # 404 by itself if the file is missing
