"""Handshake verification for the Speech Engine endpoint, done before the WebSocket upgrade.

* The ``X-Elevenlabs-Speech-Engine-Authorization`` JWT is checked with the ``elevenlabs`` SDK's
  own :func:`~elevenlabs.speech_engine.verify_speech_engine_jwt` (HS256, secret derived from the
  API key, exact issuer and subject, 60 s leeway), so our rules cannot drift from the SDK's.
* An optional shared secret, which the engine sends as a configured request header, is compared
  in constant time, byte for byte (:func:`secret_matches`): a header that is not UTF-8 is simply
  a wrong secret.
* A blank API key verifies nothing (settings refuse one already; this is the second line).

Failures answer HTTP 401 with a short fixed body; the reason is logged, never the token.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from elevenlabs.speech_engine import verify_speech_engine_jwt
from pydantic import SecretStr

from voice_channel.settings import Settings

__all__ = [
    "JWT_HEADER",
    "PublicHeaders",
    "Rejection",
    "bearer_credential",
    "check_handshake",
    "protection",
    "public_headers",
    "secret_matches",
]

JWT_HEADER = "X-Elevenlabs-Speech-Engine-Authorization"


@dataclass(frozen=True, slots=True)
class Rejection:
    #: Sent to the client (fixed wording, like the SDK's own server).
    public: str
    #: Logged (never contains the token or a secret).
    reason: str


def secret_matches(given: str | None, secret: SecretStr) -> bool:
    """Whether a request's ``given`` value is ``secret``, compared in constant time.

    aiohttp decodes header bytes that are not UTF-8 as surrogate escapes; they are turned back into
    the bytes that were sent, so they compare (unequal) instead of failing to encode.
    """
    if given is None:
        return False
    expected = secret.get_secret_value()
    if not expected.strip():  # a blank secret matches nothing
        return False
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode("utf-8"))


def bearer_credential(headers: Mapping[str, str]) -> str | None:
    """The credential of an ``Authorization: Bearer <credential>`` header, or ``None``."""
    scheme, _, value = headers.get("Authorization", "").partition(" ")
    value = value.strip()
    return value if scheme.lower() == "bearer" and value else None


def check_handshake(headers: Mapping[str, str], settings: Settings) -> Rejection | None:
    """Return why the upgrade request must be refused, or ``None`` if it may proceed.

    ``headers`` must be case-insensitive (aiohttp's ``request.headers`` is).
    """
    secret = settings.auth.header_secret
    if secret is not None:
        if not secret_matches(headers.get(settings.auth.header_name), secret):
            return Rejection("authorization failed", "shared secret header missing or wrong")
    if settings.auth.insecure_no_auth:
        return None
    token = headers.get(JWT_HEADER)
    if not token:
        return Rejection("missing authorization header", "no Speech Engine JWT header")
    api_key = settings.elevenlabs.api_key
    if api_key is None or not api_key.get_secret_value().strip():  # refused at start-up already
        return Rejection("authorization failed", "no API key configured to verify the JWT")
    try:
        verify_speech_engine_jwt(token, api_key.get_secret_value())
    except ValueError as exc:  # UnicodeError included: a header that is not UTF-8
        return Rejection("authorization failed", str(exc)[:200])
    return None


def protection(settings: Settings) -> str:
    """What keeps strangers out of the Speech Engine endpoint with these settings, in words for a log line:
    ``ElevenLabs JWT + shared secret``, ``ElevenLabs JWT``, ``shared secret`` or ``nothing``."""
    parts = [] if settings.auth.insecure_no_auth else ["ElevenLabs JWT"]
    if settings.auth.header_secret is not None:
        parts.append("shared secret")
    return " + ".join(parts) or "nothing"


#: Never shown to plugins, whatever the settings: credentials of any kind.
_ALWAYS_HIDDEN = frozenset({JWT_HEADER.lower(), "authorization", "cookie"})


class PublicHeaders(Mapping[str, str]):
    """The handshake headers a plugin may see: a read-only view without the JWT and the shared secret.

    A view over the request's own headers rather than a copy: the request (and its headers) stays
    alive for as long as the conversation anyway, and thousands of conversations stay open per
    process. Names are case-insensitive, as in HTTP; a repeated header gives its first value.
    """

    __slots__ = ("_headers", "_secret_header")

    def __init__(self, headers: Mapping[str, str], secret_header: str) -> None:
        self._headers = headers
        self._secret_header = secret_header

    def _hidden(self, lowered: str) -> bool:
        return lowered in _ALWAYS_HIDDEN or lowered == self._secret_header.lower()

    def __getitem__(self, name: str) -> str:
        if self._hidden(name.lower()):
            raise KeyError(name)
        return self._headers[name]

    def __iter__(self) -> Iterator[str]:
        seen: set[str] = set()
        for name in self._headers:
            lowered = name.lower()
            if lowered not in seen and not self._hidden(lowered):
                seen.add(lowered)
                yield name

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"PublicHeaders({dict(self)!r})"


def public_headers(headers: Mapping[str, str], settings: Settings) -> PublicHeaders:
    """The handshake headers a plugin may see: without the JWT and the shared secret (a view, see
    :class:`PublicHeaders`)."""
    return PublicHeaders(headers, settings.auth.header_name)
