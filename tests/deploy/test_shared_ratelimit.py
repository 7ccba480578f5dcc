"""The token endpoint's rate limit shared through a real redis-server: global, checked at start-up, and
following ``redis.on_error`` when Redis goes away while the server runs."""

from __future__ import annotations

import asyncio
import sys

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from cli_process import run
from deploy_support import need_module
from processes import free_port
from voice_channel.app import create_app
from voice_channel.elevenlabs.shared_ratelimit import safe_redis_url
from voice_channel.settings import Settings, SettingsError

aioredis = need_module("redis.asyncio", "scale")


async def token_statuses(server: TestServer, count: int) -> list[int]:
    statuses = []
    async with aiohttp.ClientSession() as session:
        for _ in range(count):
            async with session.get(server.make_url("/api/token")) as resp:
                statuses.append(resp.status)
    return statuses


async def started(settings: Settings) -> TestServer:
    server = TestServer(create_app(settings), host="127.0.0.1")
    await server.start_server()
    return server


async def test_two_servers_on_one_redis_share_each_clients_bucket(redis_server, make_settings):
    settings = make_settings(redis={"url": redis_server.url}, token={"rate_per_minute": 3})
    first, second = await started(settings), await started(settings)
    try:
        statuses = await token_statuses(first, 2) + await token_statuses(second, 2) + await token_statuses(first, 1)
    finally:
        await first.close()
        await second.close()
    # 3 per minute for 127.0.0.1 in total; each server alone would have let 3 through.
    assert statuses.count(429) == 2, statuses
    assert [s != 429 for s in statuses] == [True, True, True, False, False]


async def test_the_bucket_refills_at_the_configured_rate_and_says_when(redis_server, make_settings):
    from voice_channel.elevenlabs.ratelimit import RateLimiter
    from voice_channel.elevenlabs.shared_ratelimit import SharedRateLimiter

    client = aioredis.Redis.from_url(redis_server.url)
    try:
        limiter = SharedRateLimiter(client, make_settings(token={"rate_per_minute": 6}), RateLimiter(6))
        waits = [await limiter.acquire("203.0.113.7") for _ in range(7)]
        assert waits[:6] == [None] * 6
        # One token per 10 s: the next is nearly 10 s away (a little less: time passed meanwhile).
        assert waits[6] is not None and 8 < waits[6] <= 10
        assert await limiter.acquire("203.0.113.8") is None, "buckets are per client"
        ttl = await client.pttl("voice-channel:token-rate:203.0.113.7")
        assert 1000 < ttl <= 61_000, "a bucket expires once it would be full again"
    finally:
        await client.aclose()


async def test_unreachable_redis_at_startup_is_an_error_naming_the_setting(make_settings):
    settings = make_settings(redis={"url": f"redis://:hunter2@127.0.0.1:{free_port()}/0"})
    server = TestServer(create_app(settings), host="127.0.0.1")
    with pytest.raises(SettingsError) as refused:
        await server.start_server()
    await server.close()
    message = str(refused.value)
    assert "setting 'redis.url' (env VOICE_CHANNEL_REDIS__URL)" in message and "does not answer" in message
    assert "hunter2" not in message, "the password never appears"


async def test_serve_with_unreachable_redis_exits_with_one_clear_line():
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "voice_channel.cli",
        "serve",
        "--port",
        "0",
        env={
            "PATH": "/usr/bin:/bin",
            "ELEVENLABS_API_KEY": "sk_x",
            "VOICE_CHANNEL_REDIS__URL": f"redis://127.0.0.1:{port}/0",
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert "setting 'redis.url' (env VOICE_CHANNEL_REDIS__URL): Redis does not answer" in err.decode()
    assert "Traceback" not in err.decode()


async def test_fail_closed_refuses_tokens_while_redis_is_down_and_recovers(redis_server, make_settings):
    server = await started(make_settings(redis={"url": redis_server.url, "timeout_s": 0.5}))
    try:
        assert await token_statuses(server, 1) == [403]  # allowed by the limit, refused by the default policy
        redis_server.stop()
        async with aiohttp.ClientSession() as session, session.get(server.make_url("/api/token")) as resp:
            assert resp.status == 503
            assert (await resp.json())["code"] == "unavailable"
        redis_server.start()
        assert await token_statuses(server, 1) == [403], "back to normal once Redis answers again"
    finally:
        await server.close()


async def test_fail_open_falls_back_to_this_process_limit_while_redis_is_down(redis_server, make_settings):
    settings = make_settings(redis={"url": redis_server.url, "on_error": "open"}, token={"rate_per_minute": 2})
    server = await started(settings)
    try:
        redis_server.stop()
        assert await token_statuses(server, 3) == [403, 403, 429]
    finally:
        await server.close()


# --- secrets and bad options in redis.url (review, 2026-12-06) ----------------------------------------------


def test_safe_redis_url_drops_a_password_given_in_the_query():
    # redis-py takes ?password=... (and ?username=...) as connection options.
    assert "hunter2" not in safe_redis_url("redis://127.0.0.1:6379/0?password=hunter2")
    assert "hunter2" not in safe_redis_url("redis://127.0.0.1:6379/0?username=u&password=hunter2")


async def test_an_unreachable_redis_does_not_print_the_password_of_the_url():
    code, _out, err = await run(
        "serve",
        "--insecure-no-auth",
        "--port",
        "0",
        VOICE_CHANNEL_REDIS__URL="redis://127.0.0.1:1/0?password=hunter2-in-query",
    )
    assert code == 2 and "redis.url" in err
    assert "hunter2-in-query" not in err


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_a_redis_url_with_a_bad_option_is_a_clear_error_not_a_traceback(workers):
    code, _out, err = await run(
        "serve",
        "--insecure-no-auth",
        "--port",
        "0",
        "--workers",
        workers,
        VOICE_CHANNEL_REDIS__URL="redis://:pw-secret@127.0.0.1:1/0?health_check_interval=soon",
    )
    assert "Traceback" not in err
    assert code == 2 and "setting 'redis.url'" in err and "health_check_interval" in err
    assert "pw-secret" not in err


# --- a Redis that answers with garbage while running (review, 2026-12-06) -----------------------------------


class GarbageRedis:
    """A RESP server that answers PING and the client's handshake like Redis, and every script call with
    ``reply``: something between Redis and us (a proxy, another service on the port) that went wrong."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"redis://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/0"

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                header = await reader.readline()
                if not header.startswith(b"*"):
                    break
                words = []
                for _ in range(int(header[1:])):
                    size = int((await reader.readline())[1:])
                    words.append((await reader.readexactly(size + 2))[:-2])
                command = words[0].upper()
                if command == b"HELLO":  # redis-py speaks RESP3
                    writer.write(b"%1\r\n$5\r\nproto\r\n:3\r\n")
                elif command == b"PING":
                    writer.write(b"+PONG\r\n")
                else:
                    writer.write(self.reply if command in (b"EVALSHA", b"EVAL") else b"+OK\r\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


@pytest.mark.parametrize(
    "reply",
    [
        b"$3\r\nnan\r\n",  # float("nan"): Retry-After raised ValueError
        b"$3\r\ninf\r\n",  # OverflowError
        b"$4\r\nlots\r\n",  # not a number
        b"$2\r\n-1\r\n",  # a negative wait
        b":7\r\n",  # an integer where a string is due
        b"*0\r\n",  # an empty list (falsy: it let the request through even with on_error closed)
        b"$-5\r\n",  # a bulk length redis-py cannot read (ValueError inside the client)
    ],
)
@pytest.mark.parametrize("on_error", ["closed", "open"])
async def test_a_redis_answering_garbage_follows_on_error(make_settings, reply, on_error):
    fake = GarbageRedis(reply)
    url = await fake.start()
    settings = make_settings(redis={"url": url, "on_error": on_error}, token={"rate_per_minute": 2})
    server = await started(settings)
    try:
        async with aiohttp.ClientSession() as session:
            answers = []
            for _ in range(3):
                async with session.get(server.make_url("/api/token")) as resp:
                    answers.append((resp.status, (await resp.json())["code"]))
    finally:
        await server.close()
        await fake.close()
    if on_error == "closed":
        assert answers == [(503, "unavailable")] * 3
    else:  # this process's own limit decides; then the default policy refuses (no Origin)
        assert [status for status, _ in answers] == [403, 403, 429], answers
