"""The built-in ``voice_channel_authorize_token`` policy, registered last so that any plugin decides first.

1. **Origin.** A browser page may get a token only from an allowed origin: ``token.allowed_origins``, else
   ``server.public_url``'s origin, else only loopback pages (``http(s)://127.0.0.1``, ``localhost`` or
   ``[::1]``, any port). Never the request's own ``Host``: under DNS rebinding a hostile page's name resolves
   to this server, and its ``Host`` and ``Origin`` then agree. A same-origin ``GET`` carries no ``Origin``
   header; browsers mark it ``Sec-Fetch-Site: same-origin`` instead (a header page scripts cannot set), and
   then the page's origin is the request's ``Host``, checked the same way. Anything else without an ``Origin``
   is refused.
2. **Bearer secret.** With ``token.bearer_secret`` set, ``Authorization: Bearer <secret>`` is required too
   (compared in constant time). The page asks for it as an "access code".
3. **Anonymous.** Without a bearer secret, tokens go to any page on an allowed origin only when
   ``token.allow_anonymous`` is set; otherwise nothing is issued (safe default for ``serve``).

The origin check keeps other websites from using visitors' browsers to get tokens. It does not stop a script,
which can send any header: the bearer secret, the rate limit or your own hook are for that.
"""

from __future__ import annotations

from aiohttp import web
from yarl import URL

from voice_channel.channel.auth import bearer_credential, secret_matches
from voice_channel.contract import TokenDenied
from voice_channel.markers import hookimpl
from voice_channel.serving.keys import STATE
from voice_channel.settings import Settings

__all__ = ["LOOPBACK_HOSTS", "ORIGIN_FIX", "allowed_origins", "authorize", "voice_channel_authorize_token"]


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
        given = bearer_credential(request.headers)
        if given is None:
            return TokenDenied(
                "This page needs an access code. Enter it, then press Start.",
                "access_code_required",
                401,
                "no bearer secret in the request",
            )
        if not secret_matches(given, secret):
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


#: Hosts a page may be on when no origin is configured: this machine, by its loopback names only.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
#: What an operator sets to allow other pages; said in refusals and by ``doctor``.
ORIGIN_FIX = "set server.public_url (this server's public address) or token.allowed_origins"


def allowed_origins(settings: Settings) -> list[str] | None:
    """The configured allowed origins, or ``None``: then only loopback pages are allowed."""
    if settings.token.allowed_origins:
        return settings.token.allowed_origins
    return [settings.server.public_origin] if settings.server.public_origin else None


def origin_allowed(origin: str, settings: Settings) -> bool:
    """Whether a page on ``origin`` (an ``Origin`` header) is on the built-in policy's allowed origins."""
    return _is_allowed(_normalise(origin), allowed_origins(settings))


def _check_origin(request: web.Request, settings: Settings) -> TokenDenied | None:
    origin = request.headers.get("Origin")
    allowed = allowed_origins(settings)
    if origin is None:
        if request.headers.get("Sec-Fetch-Site") != "same-origin":
            return TokenDenied(
                "Open the voice page from this server's own address to start a conversation.",
                "origin_required",
                403,
                "no Origin header and not a same-origin browser request",
            )
        # The page is on this request's Host. Behind a TLS proxy the scheme seen here is http: the host
        # is compared under each allowed origin's own scheme.
        schemes = {URL(o).scheme for o in allowed} if allowed else {"http", "https"}
        candidates = {_normalise(f"{scheme}://{request.host}") for scheme in schemes}
        if any(_is_allowed(candidate, allowed) for candidate in candidates):
            return None
        origin = f"{request.scheme}://{request.host}"
    elif _is_allowed(_normalise(origin), allowed):
        return None
    if allowed is None:
        return TokenDenied(
            "This page's address is not allowed to start conversations with this server. Without configuration"
            f" only pages on this machine (localhost) are; its operator can {ORIGIN_FIX}.",
            "origin_not_allowed",
            403,
            f"origin {origin[:200]!r} is not a loopback origin, the only ones allowed by default: {ORIGIN_FIX}",
        )
    return TokenDenied(
        "This page's address is not allowed to start conversations with this server.",
        "origin_not_allowed",
        403,
        f"origin {origin[:200]!r} is not one of {allowed} (token.allowed_origins or server.public_url)",
    )


def _is_allowed(origin: str | None, allowed: list[str] | None) -> bool:
    if origin is None:
        return False
    if allowed is not None:
        return origin in allowed
    url = URL(origin)
    return url.scheme in ("http", "https") and url.host in LOOPBACK_HOSTS


def _normalise(origin: str) -> str | None:
    try:
        url = URL(origin)
        if not url.scheme or not url.host:  # includes the literal "null" of sandboxed and file: pages
            return None
        return str(url.origin())
    except (TypeError, ValueError):  # UnicodeError too: yarl decodes the host (IDNA) only when it is read
        return None
