"""The token endpoint's per-client rate limit shared by every worker and host, in Redis.

Configured by ``redis.url`` (the ``scale`` extra brings the client, redis-py). Without it each
process keeps its own :class:`~voice_channel.elevenlabs.ratelimit.RateLimiter`, which under N workers lets a
client through N times as often; with it the bucket of each client address lives in Redis.

* **The bucket** is the in-process one's rule (``token.rate_per_minute`` per minute, refilled
  continuously, bursts up to the same number), run as one Lua script so that reading, refilling and
  taking are a single atomic step however many workers ask at once. The clock is Redis's own
  (``TIME``), so hosts with drifting clocks agree. A bucket expires once it would be full again.
* **At start-up** Redis must answer a PING, or the server refuses to start with an error that names
  ``redis.url`` (:func:`check_redis`, :func:`redis_context`).
* **While running**, a command that fails (Redis down, a timeout of ``redis.timeout_s``, a reply that is
  not the script's) follows
  ``redis.on_error``: ``closed`` (default) refuses the token request with 503
  (:class:`RateLimitUnavailable`), since a conversation token costs money; ``open`` lets this
  process's own limiter decide, so a client gets at most N workers' worth until Redis is back.
  Either way the outage is logged once when it starts and once when it ends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web
from yarl import URL

from voice_channel.elevenlabs.ratelimit import RateLimiter
from voice_channel.extras import install_hint
from voice_channel.serving.keys import TOKENS
from voice_channel.settings import SettingsError

if TYPE_CHECKING:
    from voice_channel.settings import Settings

__all__ = ["RateLimitUnavailable", "SharedRateLimiter", "check_redis", "redis_context", "safe_redis_url"]

log = structlog.get_logger("voice_channel.shared_ratelimit")

#: KEYS[1]: the client's bucket. ARGV: capacity, refill per second. Returns "" when allowed, else the
#: seconds until the next request is allowed (as a string: Lua numbers become integers in replies).
TOKEN_BUCKET_LUA = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local capacity = tonumber(ARGV[1])
local per_second = tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or capacity
local at = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - at) * per_second)
local wait = ''
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = tostring((1 - tokens) / per_second)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((capacity - tokens) / per_second * 1000) + 1000)
return wait
"""


class RateLimitUnavailable(Exception):
    """The shared limit cannot be checked and ``redis.on_error`` is ``closed``."""


def safe_redis_url(url: str) -> str:
    """``url`` without its password (in the authority or a ``?password=`` option), for messages and logs."""
    parsed = URL(url)
    if parsed.password or parsed.user:
        parsed = parsed.with_password(None).with_user(None)
    if any(name.lower() == "password" for name in parsed.query):
        parsed = parsed.with_query(
            [(name, "***" if name.lower() == "password" else value) for name, value in parsed.query.items()]
        )
    return str(parsed)


def _setting_error(settings: Settings, problem: str) -> SettingsError:
    assert settings.redis.url is not None
    shown = safe_redis_url(settings.redis.url.get_secret_value())
    return SettingsError(
        f"setting 'redis.url' (env VOICE_CHANNEL_REDIS__URL): {problem} at {shown}. Start Redis (`make redis` for"
        " a local one), fix the URL, or unset it to limit token requests per process."
    )


def _unanswered(settings: Settings, exc: BaseException) -> SettingsError:
    return _setting_error(settings, f"Redis does not answer ({exc.__class__.__name__}: {exc})")


def _connect(client_class: Any, settings: Settings) -> Any:
    """A ``redis.Redis`` or ``redis.asyncio.Redis`` client for ``redis.url``, both timeouts ``redis.timeout_s``."""
    assert settings.redis.url is not None
    try:
        return client_class.from_url(
            settings.redis.url.get_secret_value(),
            socket_timeout=settings.redis.timeout_s,
            socket_connect_timeout=settings.redis.timeout_s,
        )
    except ValueError as exc:  # e.g. "Invalid value for 'health_check_interval' in connection URL." (no secret)
        shown = safe_redis_url(settings.redis.url.get_secret_value())
        raise SettingsError(
            f"setting 'redis.url' (env VOICE_CHANNEL_REDIS__URL): the Redis client cannot use {shown}: {exc}"
            " Fix the URL, e.g. redis://127.0.0.1:6379/0, or unset it to limit token requests per process."
        ) from None


def _redis_module() -> Any:
    try:
        import redis
    except ImportError:
        raise SettingsError(f"setting 'redis.url' needs the Redis client: {install_hint('scale')}") from None
    return redis


def check_redis(settings: Settings) -> None:
    """Synchronous start-up check (the gunicorn master's, before any worker starts)."""
    if settings.redis.url is None:
        return
    redis = _redis_module()
    client = _connect(redis.Redis, settings)
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        raise _unanswered(settings, exc) from None
    finally:
        client.close()


class SharedRateLimiter:
    """``token.rate_per_minute`` per client address across all processes that share one Redis."""

    def __init__(self, client: Any, settings: Settings, fallback: RateLimiter) -> None:
        self._client = client
        self._script = client.register_script(TOKEN_BUCKET_LUA)
        self._capacity = settings.token.rate_per_minute
        self._per_second = settings.token.rate_per_minute / 60.0
        self._prefix = f"{settings.redis.key_prefix}:token-rate:"
        self._fail_open = settings.redis.on_error == "open"
        self._fallback = fallback
        self._down = False

    async def acquire(self, key: str) -> float | None:
        """Take one request from ``key``'s bucket: ``None`` if allowed, else seconds until the next one is.

        :raises RateLimitUnavailable: Redis failed and ``redis.on_error`` is ``closed``.
        """
        try:
            reply = await self._script(keys=[self._prefix + key], args=[self._capacity, self._per_second])
            wait = self._wait(reply)
        except Exception as exc:  # Redis failed, or answered what the script never returns: the same outage
            if not self._down:
                self._down = True
                log.error(
                    "shared_rate_limit_unavailable",
                    error=f"{exc.__class__.__name__}: {exc}",
                    on_error="open: this process's own limit applies" if self._fail_open else "closed: refusing",
                )
            if self._fail_open:
                return self._fallback.acquire(key)
            raise RateLimitUnavailable(str(exc)) from exc
        if self._down:
            self._down = False
            log.info("shared_rate_limit_restored")
        return wait

    def _wait(self, reply: object) -> float | None:
        """The script's reply read: ``""`` (allowed) or the seconds to wait, at most one token's refill.

        :raises ValueError: anything else (a proxy or another service answering in Redis's place).
        """
        if isinstance(reply, bytes):
            reply = reply.decode("ascii")
        if not isinstance(reply, str):
            raise ValueError(f"unexpected reply {type(reply).__name__} from the rate-limit script")
        if not reply:
            return None
        wait = float(reply)
        if not 0 < wait <= 1 / self._per_second + 1:  # also NaN
            raise ValueError(f"unexpected wait {reply[:40]!r} from the rate-limit script")
        return wait


async def redis_context(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx``: with ``redis.url``, connect, check (a clear start-up error), share the token limit."""
    service = app[TOKENS]
    settings = service.settings
    if settings.redis.url is None:
        yield
        return
    redis = _redis_module()
    import redis.asyncio as aioredis

    client = _connect(aioredis.Redis, settings)
    try:
        try:
            await client.ping()
        except (redis.RedisError, OSError) as exc:
            raise _unanswered(settings, exc) from None
        service.shared = SharedRateLimiter(client, settings, service.limiter)
        log.info("shared_rate_limit", redis=safe_redis_url(settings.redis.url.get_secret_value()))
        yield
    finally:
        service.shared = None
        await client.aclose()
