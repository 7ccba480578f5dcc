"""Handshake verification for the Speech Engine endpoint, done before the WebSocket upgrade.

* The ``X-Elevenlabs-Speech-Engine-Authorization`` JWT is checked with the ``elevenlabs`` SDK's
  own :func:`~elevenlabs.speech_engine.verify_speech_engine_jwt` (HS256, secret derived from the
  API key, exact issuer and subject, 60 s leeway), so our rules cannot drift from the SDK's.
* An optional shared secret, which the engine sends as a configured request header, is compared
  in constant time.

Failures answer HTTP 401 with a short fixed body; the reason is logged, never the token.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from elevenlabs.speech_engine import verify_speech_engine_jwt

from voice_channel.settings import Settings

__all__ = ["JWT_HEADER", "Rejection", "check_handshake", "public_headers"]

JWT_HEADER = "X-Elevenlabs-Speech-Engine-Authorization"


@dataclass(frozen=True, slots=True)
class Rejection:
    #: Sent to the client (fixed wording, like the SDK's own server).
    public: str
    #: Logged (never contains the token or a secret).
    reason: str


def check_handshake(headers: Mapping[str, str], settings: Settings) -> Rejection | None:
    """Return why the upgrade request must be refused, or ``None`` if it may proceed.

    ``headers`` must be case-insensitive (aiohttp's ``request.headers`` is).
    """
    secret = settings.auth.header_secret
    if secret is not None:
        given = headers.get(settings.auth.header_name, "")
        if not hmac.compare_digest(given.encode("utf-8"), secret.get_secret_value().encode("utf-8")):
            return Rejection("authorization failed", "shared secret header missing or wrong")
    if settings.auth.insecure_no_auth:
        return None
    token = headers.get(JWT_HEADER)
    if not token:
        return Rejection("missing authorization header", "no Speech Engine JWT header")
    api_key = settings.elevenlabs.api_key
    if api_key is None:  # refused at start-up already; kept as a second line of defence
        return Rejection("authorization failed", "no API key configured to verify the JWT")
    try:
        verify_speech_engine_jwt(token, api_key.get_secret_value())
    except ValueError as exc:
        return Rejection("authorization failed", str(exc))
    return None


def public_headers(headers: Mapping[str, str], settings: Settings) -> dict[str, str]:
    """The handshake headers a plugin may see: without the JWT and the shared secret."""
    hidden = {JWT_HEADER.lower(), settings.auth.header_name.lower(), "authorization", "cookie"}
    return {name: value for name, value in headers.items() if name.lower() not in hidden}
