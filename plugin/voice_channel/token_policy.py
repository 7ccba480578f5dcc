"""The built-in ``voice_channel_authorize_token`` policy, registered last so that any plugin decides first.

1. **Origin.** A browser page may get a token only from an allowed origin: ``token.allowed_origins``, or by
   default this server's own (``server.public_url``'s origin, else the scheme and ``Host`` of the request). A
   same-origin ``GET`` carries no ``Origin`` header; browsers mark it ``Sec-Fetch-Site: same-origin`` instead
   (a header page scripts cannot set), and that is accepted. Anything else without an ``Origin`` is refused.
2. **Bearer secret.** With ``token.bearer_secret`` set, ``Authorization: Bearer <secret>`` is required too
   (compared in constant time). The page asks for it as an "access code".
3. **Anonymous.** Without a bearer secret, tokens go to any page on an allowed origin only when
   ``token.allow_anonymous`` is set; otherwise nothing is issued (safe default for ``serve``).

The origin check keeps other websites from using visitors' browsers to get tokens. It does not stop a script,
which can send any header: the bearer secret, the rate limit or your own hook are for that.
"""

from __future__ import annotations

import hmac

from aiohttp import web
from yarl import URL

from voice_channel.keys import STATE
from voice_channel.markers import hookimpl
from voice_channel.settings import Settings
from voice_channel.tokens import TokenDenied

__all__ = ["authorize", "voice_channel_authorize_token"]


@hookimpl(trylast=True)
def voice_channel_authorize_token(request: web.Request) -> bool | TokenDenied:
    return authorize(request, request.config_dict[STATE].settings)


def authorize(request: web.Request, settings: Settings) -> bool | TokenDenied:
    """The built-in policy's decision for ``request``."""
    denied = _check_origin(request, settings)
    if denied is not None:
        return denied
    secret = settings.token.bearer_secret
    if secret is not None:
        given = _bearer(request)
        if given is None:
            return TokenDenied(
                "This page needs an access code. Enter it, then press Start.",
                "access_code_required",
                401,
                "no bearer secret in the request",
            )
        if not hmac.compare_digest(given.encode("utf-8"), secret.get_secret_value().encode("utf-8")):
            return TokenDenied(
                "That access code is not right. Check it, then press Start again.",
                "access_code_wrong",
                401,
                "wrong bearer secret",
            )
        return True
    if settings.token.allow_anonymous:
        return True
    return TokenDenied(
        "This voice server does not accept conversations from browsers yet.",
        "not_enabled",
        403,
        "neither token.bearer_secret nor token.allow_anonymous is set",
    )


def _check_origin(request: web.Request, settings: Settings) -> TokenDenied | None:
    origin = request.headers.get("Origin")
    if origin is None:
        if request.headers.get("Sec-Fetch-Site") == "same-origin":
            return None
        return TokenDenied(
            "Open the voice page from this server's own address to start a conversation.",
            "origin_required",
            403,
            "no Origin header and not a same-origin browser request",
        )
    allowed = settings.token.allowed_origins or [settings.server.public_origin or _own_origin(request)]
    if _normalise(origin) in allowed:
        return None
    return TokenDenied(
        "This page's address is not allowed to start conversations with this server.",
        "origin_not_allowed",
        403,
        f"origin {origin[:200]!r} is not one of {allowed}",
    )


def _own_origin(request: web.Request) -> str:
    return _normalise(f"{request.scheme}://{request.host}") or ""


def _normalise(origin: str) -> str | None:
    try:
        url = URL(origin)
    except (TypeError, ValueError):
        return None
    if not url.scheme or not url.host:  # includes the literal "null" of sandboxed and file: pages
        return None
    return str(url.origin())


def _bearer(request: web.Request) -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    value = value.strip()
    return value if scheme.lower() == "bearer" and value else None
