"""CORS for ``/api/token``: a page on another origin the built-in policy allows may read the answer.

``token.allowed_origins`` may name the operator's own site (``https://app.example.com``) while this server is
``https://voice.example.com``. The page's ``fetch`` is then cross-origin: the browser hands the answer to the
page only if it carries ``Access-Control-Allow-Origin`` for the page's origin, and before a request with an
access code (``Authorization``) it sends an ``OPTIONS`` preflight. Both follow the built-in policy's origin
rule (:func:`voice_channel.default_plugins.token_policy.origin_allowed`); the policy itself still decides who
gets a token. No cookies are involved, so credentials are never allowed.

Written here rather than with ``aiohttp-cors``: that library matches a fixed list of origins, and the policy's
default (any loopback page, any port) is a rule, not a list.
"""

from __future__ import annotations

from aiohttp import web

from voice_channel.default_plugins.token_policy import origin_allowed
from voice_channel.serving.keys import TOKENS

__all__ = ["cors_headers", "token_preflight"]

#: How long a browser may reuse a preflight's answer (seconds).
PREFLIGHT_MAX_AGE_S = 600


def cors_headers(request: web.Request) -> dict[str, str]:
    """The CORS headers of a token answer: the page's origin when it is allowed, and ``Vary: Origin`` always
    (the answer depends on it, so no cache may hand one origin's answer to another)."""
    origin = request.headers.get("Origin")
    if origin is not None and origin_allowed(origin, request.config_dict[TOKENS].settings):
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
    return {"Vary": "Origin"}


async def token_preflight(request: web.Request) -> web.Response:
    """``OPTIONS /api/token``: a ``GET`` with an ``Authorization`` header, from an allowed origin, may follow."""
    headers = cors_headers(request)
    if "Access-Control-Allow-Origin" not in headers or request.headers.get("Access-Control-Request-Method") != "GET":
        return web.Response(status=403, headers={"Vary": "Origin"})  # no grant: the browser sends no request
    headers.update(
        {
            "Access-Control-Allow-Methods": "GET",
            "Access-Control-Allow-Headers": "Authorization",
            "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE_S),
        }
    )
    return web.Response(status=204, headers=headers)
