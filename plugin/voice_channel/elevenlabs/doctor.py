"""``voice-channel doctor``: is this deployment wired up? Each check says what it found and how to fix it.

The WebSocket probe is side-effect free: it opens the upgrade without a JWT (sending the shared secret when one
is configured) and expects the channel's own refusal, ``401 missing authorization header``. That proves the URL
reaches a voice channel, at the right path, which accepts this configuration's shared secret and insists on
ElevenLabs' signature, without starting a conversation.
"""

from __future__ import annotations

import base64
import hmac
import secrets
from dataclasses import asdict, dataclass
from typing import Any, Literal

import aiohttp
from yarl import URL

from voice_channel.channel.languages import LANGUAGES, normalize_language
from voice_channel.default_plugins.token_policy import ORIGIN_FIX, allowed_origins
from voice_channel.elevenlabs.api import NoApiKey, classify, open_client, request_options
from voice_channel.elevenlabs.engines import TURN_LABELS, engine_as_json, header_value, turn_settings
from voice_channel.settings import Settings

__all__ = ["Check", "run_checks"]

Status = Literal["ok", "warn", "fail", "skip"]
#: The channel's answer to an upgrade without a JWT (auth.py); anything else is not this channel, or refuses us.
MISSING_JWT = "missing authorization header"


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _normalise_ws_url(url: str) -> str:
    try:
        parsed = URL(url)
    except ValueError:
        return url
    return str(parsed).rstrip("/")


async def run_checks(settings: Settings) -> list[Check]:
    """Every check, in order; later ones are skipped when what they need is missing."""
    checks: list[Check] = []
    key = settings.elevenlabs.api_key
    checks.append(
        Check("api_key", "ok", "an ElevenLabs API key is configured")
        if key is not None
        else Check("api_key", "fail", "no ElevenLabs API key", "set ELEVENLABS_API_KEY")
    )
    engine_id = settings.elevenlabs.speech_engine_id
    checks.append(
        Check("engine_id", "ok", f"Speech Engine {engine_id}")
        if engine_id is not None
        else Check(
            "engine_id",
            "fail",
            "no Speech Engine configured",
            "set ELEVENLABS_SPEECH_ENGINE_ID, or run `voice-channel engine create --write-env .env`",
        )
    )
    config = None
    if key is not None and engine_id is not None:
        config, check = await _fetch_engine(settings, engine_id)
        checks.append(check)
    else:
        checks.append(Check("engine", "skip", "needs the API key and the engine id"))
    engine_ws_url = config.speech_engine.ws_url if config is not None else None
    checks.append(_check_ws_url(settings, engine_ws_url))
    checks.append(_check_header_secret(settings, config))
    checks.append(_check_confirmation_language(settings, config))
    checks.extend(_turn_checks(config))
    checks.append(await _probe_websocket(settings, engine_ws_url or settings.server.public_ws_url))
    checks.append(_check_browser(settings))
    return checks


async def _fetch_engine(settings: Settings, engine_id: str) -> tuple[Any, Check]:
    try:
        async with open_client(settings) as client:
            resource = await client.speech_engine.get(engine_id, request_options=request_options(settings))
    except NoApiKey as exc:  # pragma: no cover - checked before
        return None, Check("engine", "fail", str(exc))
    except Exception as exc:
        failure = classify(exc)
        if failure is None:
            raise
        fix = {
            "auth": "check ELEVENLABS_API_KEY (and elevenlabs.base_url for data residency)",
            "not_found": "check ELEVENLABS_SPEECH_ENGINE_ID against `voice-channel engine list`",
            "unreachable": "check the network and elevenlabs.base_url",
        }.get(failure.kind)
        return None, Check("engine", "fail", failure.message, fix)
    config = resource.config
    return config, Check("engine", "ok", f"ElevenLabs knows {engine_id} ({config.name!r})")


def _check_ws_url(settings: Settings, engine_ws_url: str | None) -> Check:
    expected = settings.server.public_ws_url
    if expected is None:
        return Check(
            "ws_url",
            "warn",
            "server.public_url is not set, so the engine's ws_url cannot be checked",
            "set server.public_url (VOICE_CHANNEL_SERVER__PUBLIC_URL), e.g. https://voice.example.com",
        )
    if engine_ws_url is None:
        return Check("ws_url", "skip", f"this server answers at {expected}; the engine could not be read")
    if _normalise_ws_url(engine_ws_url) == _normalise_ws_url(expected):
        return Check("ws_url", "ok", f"the engine connects to {expected}")
    return Check(
        "ws_url",
        "fail",
        f"the engine connects to {engine_ws_url}, but this server answers at {expected}",
        f"voice-channel engine update --ws-url {expected}",
    )


def _check_header_secret(settings: Settings, config: Any) -> Check:
    secret = settings.auth.header_secret
    name = settings.auth.header_name
    if config is None:
        return Check("header_secret", "skip", "the engine could not be read")
    headers = getattr(config.speech_engine, "request_headers", None) or {}
    sent = next((value for header, value in headers.items() if header.lower() == name.lower()), None)
    if secret is None:
        if sent is not None:
            return Check(
                "header_secret",
                "warn",
                f"the engine sends {name}, but this server does not check it",
                "set auth.header_secret to the same value (VOICE_CHANNEL_AUTH__HEADER_SECRET)",
            )
        return Check("header_secret", "ok", "no shared secret configured (ElevenLabs' signature only)")
    if sent is None:
        return Check(
            "header_secret",
            "fail",
            f"this server requires {name}, but the engine does not send it: every conversation would be refused",
            "voice-channel engine update --secret-header",
        )
    if not isinstance(sent, str):
        return Check("header_secret", "warn", f"the engine sends {name} from a workspace secret; cannot compare it")
    if hmac.compare_digest(sent.encode("utf-8"), secret.get_secret_value().encode("utf-8")):
        return Check("header_secret", "ok", f"the engine sends the configured {name}")
    return Check(
        "header_secret",
        "fail",
        f"the engine sends a different {name} than this server expects: every conversation would be refused",
        "voice-channel engine update --secret-header",
    )


def _check_confirmation_language(settings: Settings, config: Any) -> Check:
    """Are confirmations spoken in the language the engine's callers speak?"""
    name = "confirmation_language"
    setting = settings.confirmations.language
    header = settings.confirmations.language_header
    own = f"confirmations in {setting} (confirmations.language)"
    if config is None:
        return Check(name, "ok", f"{own}; the engine could not be read")
    engine_language = getattr(config, "language", None)
    headers = getattr(config.speech_engine, "request_headers", None) or {}
    sent = next((header_value(value) for key, value in headers.items() if key.lower() == header.lower()), None)
    if isinstance(sent, dict) and "variable_name" in sent:
        return Check(
            name, "ok", f"per conversation from the dynamic variable {sent['variable_name']} ({header}), else {setting}"
        )
    if isinstance(sent, str):
        code = normalize_language(sent)
        if code is None:
            return Check(
                name,
                "warn",
                f"the engine sends {header}: {sent!r}, which confirmations do not speak; callers hear {setting}",
                f"voice-channel engine update --language <one of {', '.join(LANGUAGES)}>",
            )
        return Check(name, "ok", f"confirmations in {code} ({header} from the engine)")
    spoken = normalize_language(engine_language) if engine_language else None
    if engine_language and spoken is None:
        return Check(
            name,
            "warn",
            f"the engine's language is {engine_language}, which confirmations do not speak; callers hear {setting}",
            f"confirmations speak {', '.join(LANGUAGES)}",
        )
    if spoken is not None and spoken != setting:
        return Check(
            name,
            "warn",
            f"the engine's language is {engine_language}, but {own}",
            f"voice-channel engine update --language {engine_language}",
        )
    return Check(name, "ok", own)


#: Backchannels worth ignoring, suggested when the engine ignores none.
SUGGESTED_IGNORE_TERMS = ("uh-huh", "mm-hmm", "okay", "gotcha", "right")


def _turn_checks(config: Any) -> list[Check]:
    """One line per turn setting the engine has, and a hint when no backchannel would be ignored."""
    if config is None:
        return []
    keys = {label: key for key, label in TURN_LABELS.items()}
    checks = [Check(f"turn.{keys[label]}", "ok", f"{label}: {value}") for label, value in turn_settings(config)]
    turn = engine_as_json(config).get("turn", {})
    if not turn.get("interruption_ignore_terms") and not turn.get("interruption_ignore_term_languages"):
        suggestion = " ".join(f"--ignore-term {term}" for term in SUGGESTED_IGNORE_TERMS)
        checks.append(
            Check(
                "ignore_terms",
                "ok",
                "hint: no interruption ignore terms, so a backchannel such as 'uh-huh' interrupts the agent;"
                f" to keep talking through them: voice-channel engine update {suggestion}",
            )
        )
    return checks


async def _probe_websocket(settings: Settings, ws_url: str | None) -> Check:
    if ws_url is None:
        return Check("websocket", "skip", "no URL to probe (set server.public_url)")
    url = URL(ws_url)
    http_url = url.with_scheme({"ws": "http", "wss": "https"}.get(url.scheme, url.scheme))
    headers = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(secrets.token_bytes(16)).decode(),
    }
    if settings.auth.header_secret is not None:
        headers[settings.auth.header_name] = settings.auth.header_secret.get_secret_value()
    timeout = aiohttp.ClientTimeout(total=settings.elevenlabs.timeout_s)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(http_url, headers=headers, allow_redirects=False) as response,
        ):
            status = response.status
            body = "" if status == 101 else (await response.content.read(200)).decode("utf-8", "replace").strip()
    except (aiohttp.ClientError, TimeoutError) as exc:
        return Check(
            "websocket",
            "fail",
            f"cannot reach {ws_url} ({type(exc).__name__})",
            "is `voice-channel serve` running, and does the reverse proxy forward this path?",
        )
    if status == 401 and body == MISSING_JWT:
        return Check("websocket", "ok", f"{ws_url} answers, and refuses connections that ElevenLabs did not sign")
    if status == 401:
        return Check(
            "websocket",
            "fail",
            f"{ws_url} refused this configuration's shared secret ({body or 'HTTP 401'})",
            "the running server has a different auth.header_secret: use the same settings for serve and doctor",
        )
    if status == 101:
        return Check(
            "websocket",
            "warn",
            f"{ws_url} accepts connections without ElevenLabs' signature (auth.insecure_no_auth)",
            "only behind an IP allowlist; otherwise unset insecure_no_auth",
        )
    if status == 404:
        return Check("websocket", "fail", f"nothing at {ws_url} (HTTP 404)", "check server.path and the proxy's routes")
    return Check(
        "websocket",
        "fail",
        f"{ws_url} answered HTTP {status}, not the voice channel's handshake",
        "check that the URL reaches `voice-channel serve` and that the proxy forwards WebSocket upgrades",
    )


def _check_browser(settings: Settings) -> Check:
    token = settings.token
    if token.bearer_secret is None and not token.allow_anonymous:
        return Check(
            "browser",
            "warn" if settings.ui.enabled else "ok",
            "the token endpoint gives no browser a token (no token.bearer_secret, token.allow_anonymous off)",
            "set token.bearer_secret (an access code) or token.allow_anonymous" if settings.ui.enabled else None,
        )
    how = "an access code" if token.bearer_secret is not None else "anonymous access"
    allowed = allowed_origins(settings)
    if allowed is None:
        return Check(
            "browser",
            "warn",
            f"only pages on loopback origins (http(s)://127.0.0.1, localhost, [::1]) get tokens, with {how}:"
            " no origin is configured",
            f"to serve other browsers, {ORIGIN_FIX}",
        )
    return Check("browser", "ok", f"browsers on {', '.join(allowed)} get tokens with {how}")
