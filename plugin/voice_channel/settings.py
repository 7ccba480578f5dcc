"""Settings: one validated model, loaded once and passed down.

Sources, highest priority first: command-line flags, ``VOICE_CHANNEL_*`` environment variables
(nested with ``__``, e.g. ``VOICE_CHANNEL_SERVER__PORT``), the ElevenLabs variables
``ELEVENLABS_API_KEY`` / ``ELEVENLABS_SPEECH_ENGINE_ID``, a YAML or TOML file (``--config``),
then defaults. Runtime plugins add their own sections (``voice_channel_register_settings``).
Secrets are :data:`Secret` (a :class:`~pydantic.SecretStr`): they print as ``**********``, are only
unwrapped where a client is built, and an empty or whitespace-only one is refused wherever it comes
from (a blank key is no key: with it, a JWT signed with ``sha256("")`` would pass). An empty
*environment variable* still means "unset", as usual for ``VOICE_CHANNEL_*`` variables.
"""

from __future__ import annotations

import contextvars
import ipaddress
import json
import os
import re
import tomllib
import types
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, ClassVar, Literal, Union, get_args, get_origin

import pydantic_settings
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    create_model,
    field_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from yarl import URL

from voice_channel.contract import LANGUAGE_CODES, normalize_language

__all__ = [
    "ENGINE_ID",
    "ENV_PREFIX",
    "Secret",
    "Settings",
    "SettingsError",
    "build_settings_class",
    "env_secret",
    "load_settings",
    "secret_values",
]

ENV_PREFIX = "VOICE_CHANNEL_"
#: A Speech Engine id. Checked before any id reaches the SDK, which puts ids into URLs unescaped.
ENGINE_ID = re.compile(r"(seng|agent)_[A-Za-z0-9]+")


BLANK_SECRET = "is empty or only whitespace, which is no secret: set the real value or remove the setting"


def _not_blank(value: SecretStr) -> SecretStr:
    """The secret without the whitespace around it (a line break from a secret file, which HTTP would drop from a
    header anyway, so the secret could never match); blank is refused."""
    stripped = value.get_secret_value().strip()
    if not stripped:
        raise PydanticCustomError("blank_secret", BLANK_SECRET)
    return value if stripped == value.get_secret_value() else SecretStr(stripped)


#: The type of every secret setting (core and plugin sections alike): a :class:`~pydantic.SecretStr`
#: that may not be empty or whitespace only, taken without the whitespace around it. Use ``Secret | None`` for an
#: optional one.
Secret = Annotated[SecretStr, AfterValidator(_not_blank)]


def env_secret(name: str) -> str | None:
    """A secret read straight from the environment variable ``name`` (a runtime's documented fallback).

    Unset or empty is ``None``; whitespace only is refused like a blank :data:`Secret` setting, and the
    whitespace around a value is dropped like a :data:`Secret` setting's.

    :raises SettingsError: the variable holds only whitespace.
    """
    value = os.environ.get(name)
    if not value:
        return None
    if not value.strip():
        raise SettingsError(f"environment variable {name} {BLANK_SECRET.replace('the setting', 'the variable')}")
    return value.strip()


def secret_values(settings: BaseModel) -> list[str]:
    """Every configured secret's value, found by walking the settings (plugin sections too): for log redaction."""
    found: list[str] = []
    for name in type(settings).model_fields:
        value = getattr(settings, name, None)
        if isinstance(value, SecretStr):
            found.append(value.get_secret_value())
        elif isinstance(value, BaseModel):
            found.extend(secret_values(value))
    return found


def _parse_url(value: str, schemes: tuple[str, ...], example: str) -> URL:
    try:
        url = URL(value.strip())
    except (TypeError, ValueError):
        raise ValueError(f"not a URL, e.g. {example}") from None
    if url.scheme not in schemes or not url.host:
        raise ValueError(f"must be a {' or '.join(s + '://' for s in schemes)} URL, e.g. {example}")
    return url


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class ServerSettings(_Section):
    host: str = Field("127.0.0.1", description="Interface to listen on.")
    port: int = Field(8765, ge=0, le=65535, description="TCP port; 0 picks a free port.")
    path: str = Field("/ws", description="Path of the Speech Engine WebSocket endpoint.")
    heartbeat_s: float = Field(
        20.0,
        gt=0,
        le=300,
        description="WebSocket ping interval, whatever the traffic (idle links get dropped without it); a peer that"
        " has not answered a ping by the next one is not reading and is closed with 1008.",
    )
    max_frame_bytes: int = Field(
        1_048_576,
        ge=1024,
        le=64 * 1_048_576,
        description="Largest inbound frame, in bytes (a frame of exactly this size is accepted); larger ones close"
        " the socket with 1009.",
    )
    idle_timeout_s: float = Field(
        15.0,
        gt=0,
        le=3600,
        description="An HTTP connection that has not sent a complete request within it (a half-open or slow socket"
        " before the WebSocket upgrade), or sits idle between requests, is closed. Standalone server only.",
    )
    init_timeout_s: float = Field(
        5.0,
        gt=0,
        le=300,
        description="A socket that has not started its conversation (with `init`, or a first transcript) by then is"
        " closed with 1008; ElevenLabs sends `init` first, at once.",
    )
    write_timeout_s: float = Field(
        10.0,
        gt=0,
        le=300,
        description="Longest a write may wait for the peer to take it (a full transport buffer); a peer that does not"
        " read within it is closed with 1008.",
    )
    outbox_max_frames: int = Field(
        256,
        ge=8,
        le=1_000_000,
        description="Frames queued for one peer at most (replies wait at half of it); past it the peer is closed with"
        " 1008. Pending pongs coalesce into one.",
    )
    outbox_max_bytes: int = Field(
        1_048_576,
        ge=16_384,
        le=256 * 1_048_576,
        description="Bytes queued for one peer at most (replies wait at half of it); past it the peer is closed with"
        " 1008.",
    )
    max_conversations: int = Field(
        100, ge=1, description="Open conversations at most, per worker process; more get 503."
    )
    shutdown_timeout_s: float = Field(
        5.0, gt=0, description="After the drain: time for the turns still open to be cancelled and closed with 1001."
    )
    drain_timeout_s: float = Field(
        20.0,
        ge=0,
        le=86_400,
        description="On SIGTERM: stop listening and answer not ready, let open conversations go on this long, then"
        " close the rest with 1001. Whole shutdown <= drain_timeout_s + shutdown_timeout_s (keep below gunicorn's"
        " graceful_timeout and Kubernetes' terminationGracePeriodSeconds).",
    )
    workers: int = Field(
        1,
        ge=1,
        le=256,
        description="Worker processes of `voice-channel serve`; more than 1 runs under gunicorn (extra `scale`)."
        " Each worker holds its own conversations.",
    )
    gc_policy: bool = Field(
        True,
        description="Once ready, collect garbage, freeze start-up objects out of later collections and raise the"
        " young-generation threshold (cuts 100+ ms collector pauses under load; `serve` and gunicorn workers).",
    )
    public_url: str | None = Field(
        None,
        description="This server's public base URL as browsers and ElevenLabs reach it, e.g. https://voice.example.com"
        " (`engine create` derives ws_url from it; `doctor` checks it; allowed origin of token requests unless"
        " token.allowed_origins is set).",
    )
    trusted_proxy_hops: int = Field(
        0,
        ge=0,
        le=10,
        description="Reverse proxies in front of this server: the client address (token rate limit) is the"
        " X-Forwarded-For entry this many from the right; 0 uses the TCP peer.",
    )

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        url = _parse_url(value, ("http", "https", "ws", "wss"), "https://voice.example.com")
        if url.query_string or url.fragment:
            raise ValueError("must not have a query or fragment, e.g. https://voice.example.com")
        return str(url).rstrip("/")

    @property
    def public_ws_url(self) -> str | None:
        """The Speech Engine ``ws_url`` this server answers at, from ``public_url`` (``https`` → ``wss``)."""
        if self.public_url is None:
            return None
        url = URL(self.public_url)
        scheme = {"http": "ws", "https": "wss"}.get(url.scheme, url.scheme)
        return str(url.with_scheme(scheme)).rstrip("/") + self.path

    @property
    def public_origin(self) -> str | None:
        """The browser origin of ``public_url`` (``wss`` → ``https``), or ``None``."""
        if self.public_url is None:
            return None
        url = URL(self.public_url)
        scheme = {"ws": "http", "wss": "https"}.get(url.scheme, url.scheme)
        return str(url.with_scheme(scheme).origin())

    @field_validator("host")
    @classmethod
    def _host_is_named(cls, value: str) -> str:
        if not value.strip():  # aiohttp would listen on every interface
            raise ValueError("is empty: name the interface, e.g. 127.0.0.1, or 0.0.0.0 for every interface")
        return value

    @field_validator("path")
    @classmethod
    def _path_is_absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with '/', e.g. /ws")
        return value


class ElevenLabsSettings(_Section):
    api_key: Secret | None = Field(
        None,
        description="ElevenLabs API key; verifies Speech Engine JWTs. Env ELEVENLABS_API_KEY also works.",
        json_schema_extra={"sensitive": True},
    )
    speech_engine_id: str | None = Field(
        None, description="Speech Engine id (seng_...). Env ELEVENLABS_SPEECH_ENGINE_ID also works."
    )
    base_url: str | None = Field(
        None,
        description="ElevenLabs API base URL without /v1, e.g. https://api.eu.residency.elevenlabs.io for data"
        " residency; default https://api.elevenlabs.io.",
    )
    livekit_url: str | None = Field(
        None,
        description="LiveKit server the browser joins for WebRTC conversations, e.g."
        " wss://livekit.rtc.eu.residency.elevenlabs.io; default the client library's (wss://livekit.rtc.elevenlabs.io).",
    )
    timeout_s: float = Field(10.0, gt=0, le=300, description="Timeout of each ElevenLabs API request.")
    max_retries: int = Field(
        2, ge=0, le=5, description="Retries of an ElevenLabs API request that failed with 408, 409, 429 or 5xx."
    )

    @field_validator("speech_engine_id")
    @classmethod
    def _engine_id(cls, value: str | None) -> str | None:
        if value is not None and not ENGINE_ID.fullmatch(value):
            raise ValueError("must look like seng_<letters and digits> (or agent_...)")
        return value

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        url = _parse_url(value, ("http", "https"), "https://api.elevenlabs.io")
        if url.path.rstrip("/").endswith("/v1"):
            raise ValueError("leave out /v1 (the SDK adds it), e.g. https://api.elevenlabs.io")
        return str(url).rstrip("/")

    @field_validator("livekit_url")
    @classmethod
    def _livekit_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return str(_parse_url(value, ("ws", "wss"), "wss://livekit.rtc.elevenlabs.io")).rstrip("/")


class AuthSettings(_Section):
    header_name: str = Field(
        "x-voice-channel-secret",
        description="Handshake header carrying the shared secret (configure it in the engine's request_headers).",
    )
    header_secret: Secret | None = Field(
        None,
        description="Optional shared secret required in header_name, compared in constant time.",
        json_schema_extra={"sensitive": True},
    )
    insecure_no_auth: bool = Field(
        False, description="Accept unsigned connections (no JWT check). Only behind an IP allowlist."
    )


class TurnSettings(_Section):
    first_text_deadline_s: float = Field(
        2.5,
        gt=0,
        le=15,
        description="Send the filler if the runtime has said nothing by then (below the cascade timeout).",
    )
    filler_enabled: bool = Field(True, description="Whether to send the filler phrase on a slow runtime.")
    filler_text: str = Field("One moment.", min_length=1, description="The filler phrase.")
    apology_text: str = Field(
        "Sorry, something went wrong on my side.",
        min_length=1,
        description="Spoken when the runtime fails during a turn, or answers a message without a word.",
    )
    chunk_max_chars: int = Field(
        200, ge=20, le=4000, description="Longest chunk held back waiting for a phrase boundary."
    )
    stall_flush_ms: int = Field(40, ge=0, le=2000, description="Held text is sent when the runtime pauses this long.")
    cancel_grace_s: float = Field(
        2.0,
        gt=0,
        le=60,
        description="How long an interrupted runtime may take to stop before the next turn starts anyway.",
    )


class InputSettings(_Section):
    max_turn_chars: int = Field(2000, ge=20, le=100_000, description="Longest utterance; cut at a word boundary.")
    max_history_items: int = Field(200, ge=1, le=10_000, description="History items read per transcript (newest).")
    max_turns_per_minute: int = Field(30, ge=1, le=600, description="Turns per conversation per minute.")


class ConfirmationSettings(_Section):
    timeout_s: float = Field(30.0, gt=0, le=600, description="An unanswered confirmation is denied after this.")
    language: str = Field(
        "en",
        description=f"Language of spoken confirmations and intents ({', '.join(LANGUAGE_CODES)}); pt-BR etc. work.",
    )
    language_header: str = Field(
        "x-voice-channel-language",
        min_length=1,
        description="Handshake header that sets one conversation's language (else `language` applies).",
    )

    @field_validator("language")
    @classmethod
    def _language(cls, value: str) -> str:
        code = normalize_language(value)
        if code is None:
            supported = ", ".join(LANGUAGE_CODES)
            raise ValueError(f"unsupported language {value!r}; use one of {supported} (or a tag such as pt-BR)")
        return code


#: The built-in phrases (English). Lists in settings so they can be replaced, or localised, per deployment.
DEFAULT_START_PHRASES: tuple[str, ...] = (
    "Let me check that.",
    "Let me look into that.",
    "Give me a second to check.",
    "Checking that now.",
)
DEFAULT_PROGRESS_PHRASES: tuple[str, ...] = (
    "Still working on it.",
    "Still on it, thanks for waiting.",
    "This is taking a little longer, still working.",
    "Bear with me, still going.",
)
#: The built-in start and progress phrases of each language confirmations speak (``contract.LANGUAGE_CODES``),
#: said while ``progress.start_phrases`` / ``progress.progress_phrases`` are not set. English is the fallback.
BUILTIN_PROGRESS_PHRASES: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]] = MappingProxyType(
    {
        "en": (DEFAULT_START_PHRASES, DEFAULT_PROGRESS_PHRASES),
        "es": (
            ("Déjame comprobarlo.", "Voy a mirarlo.", "Dame un segundo para comprobarlo.", "Lo compruebo ahora."),
            (
                "Sigo con ello.",
                "Sigo en ello, gracias por esperar.",
                "Está tardando un poco más, sigo trabajando.",
                "Un momento más, sigo con ello.",
            ),
        ),
        "de": (
            ("Ich sehe kurz nach.", "Ich schaue mir das an.", "Einen Moment, ich prüfe das.", "Ich prüfe das jetzt."),
            (
                "Ich arbeite noch daran.",
                "Bin noch dran, danke fürs Warten.",
                "Das dauert etwas länger, ich bin noch dabei.",
                "Einen Moment noch, es läuft.",
            ),
        ),
        "fr": (
            ("Je vérifie ça.", "Je regarde ça.", "Une seconde, je vérifie.", "Je vérifie tout de suite."),
            (
                "J'y travaille encore.",
                "Toujours en cours, merci de patienter.",
                "Ça prend un peu plus de temps, je continue.",
                "Encore un instant, ça avance.",
            ),
        ),
        "pt": (
            ("Vou verificar isso.", "Vou dar uma olhada.", "Só um segundo, vou verificar.", "Já estou verificando."),
            (
                "Ainda estou trabalhando nisso.",
                "Ainda estou nisso, obrigado por esperar.",
                "Está demorando um pouco mais, continuo trabalhando.",
                "Só mais um momento, continuo.",
            ),
        ),
    }
)
_PHRASE_MAX_CHARS = 200


class ProgressSettings(_Section):
    """What the caller hears while the runtime runs a tool (see the README, "Progress speech while tools run")."""

    enabled: bool = Field(True, description="Speak a short phrase while a tool runs, and progress lines on long ones.")
    delay_s: float = Field(
        1.0,
        ge=0,
        le=60,
        description="A tool still running this long after it started, with nothing said since, gets a start phrase.",
    )
    interval_s: float = Field(8.0, ge=1, le=600, description="Time between progress lines while a tool keeps running.")
    max_lines: int = Field(3, ge=0, le=100, description="Progress lines per turn at most (the start phrase aside).")
    quiet_s: float = Field(
        2.0,
        ge=0,
        le=60,
        description="No phrase while text sent less than this long ago may still be playing (never talk over it).",
    )
    start_phrases: list[str] | None = Field(
        None,
        description="Said once when a tool starts, picked in turn without repeating the last one"
        " (unset: the built-in phrases of the conversation's language).",
    )
    progress_phrases: list[str] | None = Field(
        None,
        description="Said every interval_s while a tool keeps running, picked the same way"
        " (unset: the built-in phrases of the conversation's language).",
    )

    def phrases_for(self, language: str) -> tuple[Sequence[str], Sequence[str]]:
        """The start and progress phrases of a conversation in ``language``: the configured lists
        where set, else that language's built-in ones (:data:`BUILTIN_PROGRESS_PHRASES`; English for
        a language without them)."""
        start, progress = BUILTIN_PROGRESS_PHRASES.get(language, BUILTIN_PROGRESS_PHRASES["en"])
        return (
            self.start_phrases if self.start_phrases is not None else start,
            self.progress_phrases if self.progress_phrases is not None else progress,
        )

    @field_validator("start_phrases", "progress_phrases")
    @classmethod
    def _phrases(cls, values: list[str] | None) -> list[str] | None:
        if values is None:
            return None
        phrases = [" ".join(value.split()) for value in values]
        if not phrases:
            raise ValueError(
                "needs at least one phrase; to say nothing set progress.enabled: false (or answer '' from the"
                " voice_channel_progress_phrase hook)"
            )
        for phrase in phrases:
            if not phrase:
                raise ValueError("a phrase is empty or only whitespace: remove it or write the words")
            if len(phrase) > _PHRASE_MAX_CHARS:
                raise ValueError(f"a phrase is longer than {_PHRASE_MAX_CHARS} characters: keep them short")
        return phrases


class EchoSettings(_Section):
    delay_ms: int = Field(0, ge=0, le=10_000, description="Pause between echoed words (for interruption tests).")


class UISettings(_Section):
    enabled: bool = Field(False, description="Serve the browser page at / (`voice-channel demo` turns it on).")
    first_message: str | None = Field(
        None,
        min_length=1,
        max_length=1000,
        description="What the agent says first in the browser; sent only if the engine allows the first-message"
        " override (`voice-channel engine update --allow-first-message`).",
    )


class TokenSettings(_Section):
    transport: Literal["webrtc", "websocket"] = Field(
        "webrtc",
        description="How the browser reaches ElevenLabs: webrtc (a conversation token) or websocket (a signed URL).",
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Origins (scheme://host[:port]) whose pages may get a conversation token; empty:"
        " server.public_url's origin, else only loopback pages (http(s)://127.0.0.1, localhost or [::1], any port).",
    )
    bearer_secret: Secret | None = Field(
        None,
        description="When set, token requests must carry `Authorization: Bearer <secret>` (the page asks for it as"
        " an access code).",
        json_schema_extra={"sensitive": True},
    )
    allow_anonymous: bool = Field(
        False,
        description="Without a bearer secret, give tokens to any page on an allowed origin. Off: no token is issued"
        " until one of the two is configured.",
    )
    rate_per_minute: int = Field(
        10, ge=1, le=10_000, description="Token requests per client address (an IPv6 client: its /64) per minute."
    )

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, values: list[str]) -> list[str]:
        origins = []
        for value in values:
            url = _parse_url(value, ("http", "https"), "https://voice.example.com")
            if url.path not in ("", "/") or url.query_string or url.fragment:
                raise ValueError(
                    f"{value!r} is not an origin: scheme://host[:port] only, e.g. https://voice.example.com"
                )
            origins.append(str(url.origin()))
        return origins


class StatusSettings(_Section):
    bearer_secret: Secret | None = Field(
        None,
        description="When set, GET /status shows version, runtime, open conversations and uptime to requests with"
        " `Authorization: Bearer <secret>`; without it /status does not exist (404).",
        json_schema_extra={"sensitive": True},
    )


class RedisSettings(_Section):
    url: Secret | None = Field(
        None,
        description="Redis shared by all workers and hosts (the token rate limit), e.g. redis://redis:6379/0;"
        " unset: each process limits on its own. Checked at start-up.",
        json_schema_extra={"sensitive": True},
    )
    on_error: Literal["closed", "open"] = Field(
        "closed",
        description="Redis unreachable while running: closed refuses token requests (503), open falls back to"
        " this process's own limiter.",
    )
    timeout_s: float = Field(0.5, gt=0, le=30, description="Timeout of each Redis command.")
    key_prefix: str = Field(
        "voice-channel", min_length=1, max_length=100, description="Prefix of every key this server writes."
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            _parse_url(value.get_secret_value(), ("redis", "rediss"), "redis://127.0.0.1:6379/0")
        return value


class MetricsSettings(_Section):
    enabled: bool = Field(True, description="Count conversations, turns and latencies, and serve them at /metrics.")
    allowed_networks: list[str] = Field(
        default_factory=lambda: ["127.0.0.0/8", "::1/128"],
        description="Peers (CIDR) that may read /metrics; a request that came through a proxy (X-Forwarded-For)"
        " is refused whatever its peer. Others get 404.",
    )

    @field_validator("allowed_networks")
    @classmethod
    def _networks(cls, values: list[str]) -> list[str]:
        for value in values:
            try:
                ipaddress.ip_network(value, strict=False)
            except ValueError:
                raise ValueError(f"{value!r} is not a network, e.g. 10.0.0.0/8 or 127.0.0.1/32") from None
        return values


LogLevel = Literal["debug", "info", "warning", "error"]


# The config data (read from the config file, or given) of the settings being loaded; a context variable
# because pydantic-settings builds its sources in a classmethod with no per-call arguments.
_CONFIG_FILE: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "voice_channel_config_file", default=None
)


class _ElevenLabsEnvSource(PydanticBaseSettingsSource):
    """``ELEVENLABS_API_KEY`` and ``ELEVENLABS_SPEECH_ENGINE_ID``, the names ElevenLabs documents."""

    _NAMES: ClassVar[dict[str, str]] = {
        "ELEVENLABS_API_KEY": "api_key",
        "ELEVENLABS_SPEECH_ENGINE_ID": "speech_engine_id",
    }

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        found = {key: os.environ[name] for name, key in self._NAMES.items() if os.environ.get(name)}
        return {"elevenlabs": found} if found else {}


#: Other environment variables that set a key, named in its errors.
_ALSO_ENV = {("elevenlabs", key): name for name, key in _ElevenLabsEnvSource._NAMES.items()}
#: Keys whose values never appear in an error message.
_SECRET_NAME = re.compile(r"key|secret|token|password", re.IGNORECASE)
#: The user (and password) part of a URL, e.g. ``me:pw@`` in ``https://me:pw@host``: never shown in an error.
_URL_CREDENTIALS = re.compile(r"(?<=://)[^\s/?#@'\"]*@")


class Settings(BaseSettings):
    """All settings of the voice channel. See the README's configuration table."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        env_ignore_empty=True,
        extra="forbid",
        validate_default=True,
    )

    runtime: str = Field("echo", description="Runtime that answers (see `voice-channel plugins`).")
    log_level: LogLevel = Field("info", description="Log level.")
    log_format: Literal["auto", "console", "json"] = Field(
        "auto", description="Console on a terminal, JSON otherwise, unless forced."
    )
    server: ServerSettings = Field(default_factory=ServerSettings)
    elevenlabs: ElevenLabsSettings = Field(default_factory=ElevenLabsSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    turn: TurnSettings = Field(default_factory=TurnSettings)
    input: InputSettings = Field(default_factory=InputSettings)
    confirmations: ConfirmationSettings = Field(default_factory=ConfirmationSettings)
    progress: ProgressSettings = Field(default_factory=ProgressSettings)
    echo: EchoSettings = Field(default_factory=EchoSettings)
    ui: UISettings = Field(default_factory=UISettings)
    token: TokenSettings = Field(default_factory=TokenSettings)
    status: StatusSettings = Field(default_factory=StatusSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings, _ElevenLabsEnvSource(settings_cls)]
        data = _CONFIG_FILE.get()
        if data is not None:  # the config file's settings, or config given as data (a host's own config block)
            sources.append(InitSettingsSource(settings_cls, init_kwargs=data))
        return tuple(sources)


class SettingsError(Exception):
    """Settings that cannot be used; the message names each key and what is allowed."""


def build_settings_class(sections: dict[str, type[BaseModel]] | None = None) -> type[Settings]:
    """The settings model with the sections registered by runtime plugins added."""
    if not sections:
        return Settings
    clashes = set(sections) & set(Settings.model_fields)
    if clashes:
        raise SettingsError(f"plugin settings sections clash with built-in ones: {sorted(clashes)}")
    fields: dict[str, Any] = {
        name: (
            model,
            Field(
                default_factory=model,
                description=(model.__doc__ or "").strip().splitlines()[0] if model.__doc__ else None,
            ),
        )
        for name, model in sorted(sections.items())
    }
    return create_model("Settings", __base__=Settings, __doc__=Settings.__doc__, **fields)


def load_settings(
    *,
    config_file: str | Path | None = None,
    config_data: dict[str, Any] | None = None,
    overrides: dict[str, Any] | None = None,
    settings_cls: type[Settings] = Settings,
) -> Settings:
    """Load settings from all sources; raise :class:`SettingsError` with readable messages.

    :param config_file: a YAML or TOML file, below the environment in priority.
    :param config_data: the same, given as data instead of a file (e.g. a host's own config block).
    :param overrides: values with the highest priority (command-line flags).
    """
    if config_file is not None and config_data is not None:
        raise ValueError("give config_file or config_data, not both")
    path = Path(config_file) if config_file is not None else None
    if path is not None:
        if not path.is_file():
            raise SettingsError(f"config file not found: {path}")
        if path.suffix.lower() not in {".yaml", ".yml", ".toml"}:
            raise SettingsError(f"config file must be .yaml, .yml or .toml: {path}")
    token = _CONFIG_FILE.set(config_data if config_data is not None else _read_config_file(path) if path else None)
    try:
        return settings_cls(**(overrides or {}))
    except ValidationError as exc:
        where = _Origins(overrides or {}, path, config_data is not None)
        raise SettingsError(describe_errors(exc, where)) from None
    except pydantic_settings.SettingsError as exc:  # an environment variable of a list or section that is not JSON
        raise SettingsError(_env_not_json(settings_cls) or str(exc)) from None
    except RecursionError:  # an environment variable of a list or section nested too deeply for the JSON decoder
        raise SettingsError(_env_not_json(settings_cls) or _TOO_DEEP) from None
    finally:
        _CONFIG_FILE.reset(token)


def _read_config_file(path: Path) -> dict[str, Any]:
    """The settings in the YAML or TOML file ``path``: a mapping whose keys are setting names."""
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text) if path.suffix.lower() == ".toml" else yaml.load(text, Loader=_YamlLoader)
    except yaml.MarkedYAMLError as exc:
        raise SettingsError(f"cannot read config file {path}: {_yaml_problem(exc)}") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise SettingsError(f"cannot read config file {path}: {exc}") from None
    except RecursionError:
        raise SettingsError(f"cannot read config file {path}: {_TOO_DEEP}") from None
    if data is None:  # an empty file (or only comments)
        return {}
    example = "e.g. 'server:' and, on the next line, '  port: 8765'"
    if not isinstance(data, dict):
        raise SettingsError(
            f"config file {path}: the top level must be settings by name, {example} (got a {type(data).__name__})"
        )
    for key in data:
        if not isinstance(key, str):
            raise SettingsError(
                f"config file {path}: the top level has {key!r} where a setting name belongs, such as server or"
                f" runtime; {example}"
            )
    return data


class _YamlLoader(yaml.SafeLoader):
    """``yaml.safe_load``, but a key given twice in one mapping is an error (TOML's rule) instead of the last one
    silently winning: a second ``server:`` section would otherwise drop the first one's settings."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base`, whose keys may be overridden here
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: refused by the constructor itself
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"the key {key!r} is there twice (remove one; the last would silently replace the first)",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_TOO_DEEP = "nested too deeply (hundreds of lists or sections one inside another; no setting goes deeper than a few)"


def _yaml_problem(exc: yaml.MarkedYAMLError) -> str:
    """What is wrong in a YAML file and where, without PyYAML's quote of the line (it may hold a secret)."""
    parts = []
    for text, mark in ((exc.context, exc.context_mark), (exc.problem, exc.problem_mark)):
        if text:
            parts.append(f"{text} at line {mark.line + 1}, column {mark.column + 1}" if mark else text)
    return "; ".join(parts) or "not valid YAML"


def _env_not_json(settings_cls: type[BaseModel]) -> str | None:
    """The ``VOICE_CHANNEL_*`` variables of lists and sections whose values are not JSON, as an error message."""
    lines = []
    for name, value in sorted(os.environ.items()):
        if not value or not name.upper().startswith(ENV_PREFIX):
            continue
        loc = tuple(name[len(ENV_PREFIX) :].lower().split("__"))
        if not _is_complex(_annotation_at(settings_cls, loc)):
            continue
        try:
            json.loads(value)
        except ValueError:
            example = "'{\"<setting>\": <value>}'" if len(loc) == 1 else '\'["first", "second"]\''
            lines.append(
                f"setting '{'.'.join(loc)}' (env {name.upper()}): a list or section set from the environment is"
                f" JSON, e.g. {name.upper()}={example}; this value is not"
            )
        except RecursionError:
            lines.append(f"setting '{'.'.join(loc)}' (env {name.upper()}): {_TOO_DEEP}")
    return "invalid settings:\n  " + "\n  ".join(lines) if lines else None


def _annotation_at(model: Any, loc: tuple[str, ...]) -> Any:
    annotation: Any = None
    for part in loc:
        fields = getattr(model, "model_fields", None)
        if not isinstance(fields, dict) or part not in fields:
            return None
        annotation = fields[part].annotation
        model = next((a for a in (annotation, *get_args(annotation)) if _is_model(a)), None)
    return annotation


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _is_complex(annotation: Any) -> bool:
    """Whether pydantic-settings reads a variable of this type as JSON (a list, a dict, a section)."""
    if get_origin(annotation) in (Union, types.UnionType):
        return any(_is_complex(arg) for arg in get_args(annotation))
    return _is_model(annotation) or (get_origin(annotation) or annotation) in (list, dict, set, tuple, frozenset)


class _Origins:
    """Where the value of a setting came from, by the sources' priority: flag, environment, then file."""

    _ELEVENLABS_ENV: ClassVar[dict[tuple[str, ...], str]] = {
        ("elevenlabs", key): name for name, key in _ElevenLabsEnvSource._NAMES.items()
    }

    def __init__(self, overrides: dict[str, Any], path: Path | None, from_data: bool) -> None:
        self._overrides = overrides
        self._path = path
        self._from_data = from_data

    def __call__(self, loc: tuple[str, ...]) -> str:
        """``(flag)``, ``(env NAME)``, ``in config file F (env NAME overrides it)`` for the setting at ``loc``."""
        env = env_name(loc)
        if self._given(loc):
            return "(command line)"
        set_in_env = self._env_set(loc)
        if set_in_env is not None:
            return f"(env {set_in_env})"
        if self._path is not None:
            return f"in config file {self._path} (env {env} overrides it)"
        if self._from_data:
            return f"in the configuration (env {env} overrides it)"
        return f"(env {env})"

    def _given(self, loc: tuple[str, ...]) -> bool:
        node: Any = self._overrides
        for part in loc:
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        return True

    @classmethod
    def _env_set(cls, loc: tuple[str, ...]) -> str | None:
        """The environment variable that set ``loc`` (or a whole section of it, as JSON), if any."""
        import os

        present = {name.upper() for name, value in os.environ.items() if value}
        for end in range(len(loc), 0, -1):
            if env_name(loc[:end]) in present:
                return env_name(loc[:end])
        elevenlabs = cls._ELEVENLABS_ENV.get(tuple(loc[:2]))
        return elevenlabs if elevenlabs in present else None


def env_name(loc: tuple[str, ...]) -> str:
    """The ``VOICE_CHANNEL_*`` variable of the setting at ``loc``, e.g. ``VOICE_CHANNEL_SERVER__PORT``."""
    return ENV_PREFIX + "__".join(loc).upper()


def describe_errors(exc: ValidationError, origin: Callable[[tuple[str, ...]], str] | None = None) -> str:
    """One line per problem: the key, where its value came from (or the env variable that sets it), what is wrong.

    :param origin: names the source of a setting's value, e.g. ``in config file voice.yaml``; by default its
        environment variable.
    """
    lines = []
    for error in exc.errors(include_url=False):
        loc = tuple(str(part) for part in error["loc"])
        key = ".".join(loc)
        if error["type"] == "extra_forbidden":
            lines.append(
                f"unknown setting '{key}': remove it, or check its spelling"
                " (`voice-channel plugins` lists the sections runtime plugins add)"
            )
            continue
        got = error.get("input")
        hidden = (
            isinstance(got, (dict, list))
            # a whole section given as one value (`redis: redis://:pw@host`, `elevenlabs: sk_...`) may be its secret
            or error["type"] in ("model_type", "model_attributes_type", "dict_type")
            or key == "redis.url"  # may carry a password
            or _SECRET_NAME.search(loc[-1] if loc else "")
        )
        shown = "" if hidden else f" (got {got!r})"
        if origin is not None:
            where = origin(loc)
        else:
            also = _ALSO_ENV.get(loc)
            where = f"(env {env_name(loc)} or {also})" if also else f"(env {env_name(loc)})"
        lines.append(_URL_CREDENTIALS.sub("***@", f"setting '{key}' {where}: {error['msg']}{shown}"))
    return "invalid settings:\n  " + "\n  ".join(lines)
