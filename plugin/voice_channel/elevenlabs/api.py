"""The ElevenLabs REST API through the official SDK: building the client safely, and its failures in plain words.

Rules the SDK (2.78) makes necessary, each checked by a test:

* The API key is passed explicitly: the SDK's default reads ``ELEVENLABS_API_KEY`` once, at import time.
* Our own ``httpx.AsyncClient`` with ``follow_redirects=False``: the SDK's default client follows redirects and
  would send the ``xi-api-key`` header to whatever host a redirect names. Its timeout is passed to the SDK too,
  which otherwise sets 240 s on every request and ignores the injected client's own.
* Engine ids are checked against :data:`~voice_channel.settings.ENGINE_ID` before any call: the SDK puts them into
  the URL unescaped (``seng_a/../../user`` would reach ``/v1/user`` with the key).
* Errors: ``str(ApiError)`` contains the upstream body, and ``exc.request`` (httpx) carries the API key in its
  headers. Neither is ever logged or shown; :func:`classify` keeps the status code and the kind of failure only.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
from elevenlabs.core.api_error import ApiError

from voice_channel.settings import ENGINE_ID, Settings

if TYPE_CHECKING:
    from elevenlabs import AsyncElevenLabs

__all__ = [
    "MalformedResponse",
    "NoApiKey",
    "Upstream",
    "check_engine_id",
    "classify",
    "open_client",
    "request_options",
    "validation_details",
]


class NoApiKey(Exception):
    """No ElevenLabs API key is configured."""

    def __str__(self) -> str:
        return "no ElevenLabs API key: set ELEVENLABS_API_KEY (or elevenlabs.api_key in the config file)"


class MalformedResponse(Exception):
    """ElevenLabs answered 2xx without what the request is for (the SDK does not validate responses)."""


def check_engine_id(value: str) -> str:
    """``value`` if it is a Speech Engine id, else ``ValueError`` (never let anything else reach a URL)."""
    if not ENGINE_ID.fullmatch(value):
        raise ValueError(f"{value!r} is not a Speech Engine id (seng_ or agent_ followed by letters and digits)")
    return value


@contextlib.asynccontextmanager
async def open_client(settings: Settings) -> AsyncIterator[AsyncElevenLabs]:
    """An SDK client for the configured account; its HTTP connections are closed on exit.

    :raises NoApiKey: no API key is configured.
    """
    from elevenlabs import AsyncElevenLabs  # 0.3 s to import: only where a client is built

    key = settings.elevenlabs.api_key
    if key is None:
        raise NoApiKey
    timeout = settings.elevenlabs.timeout_s
    async with httpx.AsyncClient(follow_redirects=False, timeout=timeout) as http:
        options: dict[str, Any] = {"api_key": key.get_secret_value(), "httpx_client": http, "timeout": timeout}
        if settings.elevenlabs.base_url is not None:
            options["base_url"] = settings.elevenlabs.base_url
        yield AsyncElevenLabs(**options)


def request_options(settings: Settings, **extra: Any) -> dict[str, Any]:
    """Per-request SDK options: the configured retries, plus ``extra`` (e.g. ``additional_body_parameters``)."""
    return {"max_retries": settings.elevenlabs.max_retries, **extra}


@dataclass(frozen=True, slots=True)
class Upstream:
    """A failed ElevenLabs request, reduced to what may be shown and logged.

    ``message`` is plain words for whoever waits (a browser user, an operator at the CLI); ``status`` is the HTTP
    status our token endpoint answers with; ``upstream_status`` is ElevenLabs' own, when there was one.
    """

    kind: str
    message: str
    status: int
    upstream_status: int | None = None

    def log_fields(self) -> dict[str, Any]:
        return {"kind": self.kind, "upstream_status": self.upstream_status}


def classify(exc: BaseException) -> Upstream | None:
    """What went wrong with an SDK call, or ``None`` if ``exc`` is not an ElevenLabs/HTTP failure.

    Only the status code and the exception's type are used: never the body, the message or the request.
    """
    if isinstance(exc, ApiError):
        code = exc.status_code
        if code in (401, 403):
            return Upstream("auth", "ElevenLabs refused the server's API key.", 502, code)
        if code == 404:
            return Upstream("not_found", "ElevenLabs does not know the configured Speech Engine.", 502, code)
        if code == 422:
            return Upstream("invalid", "ElevenLabs rejected the request as invalid.", 502, code)
        if code == 429:
            return Upstream("busy", "ElevenLabs is busy right now. Try again in a minute.", 503, code)
        if code is not None and 200 <= code < 300:  # a 2xx whose body was not JSON
            return Upstream("bad_response", "ElevenLabs sent an answer the server cannot read.", 502, code)
        if code is not None and code >= 500:
            return Upstream("upstream_error", "ElevenLabs had a problem. Try again in a minute.", 502, code)
        return Upstream("refused", f"ElevenLabs refused the request (HTTP {code}).", 502, code)
    if isinstance(exc, MalformedResponse):
        return Upstream("bad_response", "ElevenLabs sent an answer the server cannot read.", 502, 200)
    if isinstance(exc, httpx.TimeoutException):
        return Upstream("timeout", "ElevenLabs did not answer in time. Try again in a minute.", 504)
    if isinstance(exc, httpx.HTTPError):
        return Upstream("unreachable", "The server cannot reach ElevenLabs right now.", 502)
    return None


def validation_details(exc: ApiError) -> list[str]:
    """``loc: msg`` lines of a 422 ``HTTPValidationError`` body (for the operator's CLI, never for a browser)."""
    body = exc.body
    details = body.get("detail") if isinstance(body, dict) else None
    lines = []
    if isinstance(details, list):
        for item in details:
            if isinstance(item, dict):
                loc = ".".join(str(part) for part in item.get("loc", []) if part != "body")
                lines.append(f"{loc or 'request'}: {item.get('msg', 'invalid')}")
    return lines
