"""``/metrics``: what is counted, in one process, and who may read it."""

from __future__ import annotations

import aiohttp
import pytest
from prometheus_client import REGISTRY

from support import conversation
from voice_channel.serving.keys import STATE
from voice_channel.serving.metrics import NO_METRICS


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def ask(client, text: str) -> str:  # type: ignore[no-untyped-def]
    await client.say(text)
    return (await client.reply()).text


async def scrape(channel, headers: dict[str, str] | None = None) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    async with aiohttp.ClientSession() as session:
        async with session.get(channel.server.make_url("/metrics"), headers=headers) as resp:
            return resp.status, await resp.text()


async def test_turns_latencies_interruptions_and_conversations_are_counted(start_channel):
    channel = await start_channel(echo={"delay_ms": 30})
    before = {
        "turns": value("voice_channel_turns_total", runtime="echo"),
        "first": value("voice_channel_first_chunk_seconds_count", runtime="echo"),
        "final": value("voice_channel_turn_seconds_count", runtime="echo"),
        "interrupted": value("voice_channel_interruptions_total", runtime="echo"),
        "conversations": value("voice_channel_conversations_total", runtime="echo"),
    }
    async with conversation(channel) as client:
        assert await ask(client, "one two") == "You said: one two"
        assert value("voice_channel_conversations_open", runtime="echo") >= 1
        await client.say("a long reply that is interrupted before it ends")
        await client.receive()
        assert await ask(client, "short") == "You said: short"
    await channel.app[STATE].idle.wait()
    assert value("voice_channel_turns_total", runtime="echo") == before["turns"] + 3
    assert value("voice_channel_first_chunk_seconds_count", runtime="echo") == before["first"] + 3
    assert value("voice_channel_turn_seconds_count", runtime="echo") == before["final"] + 2
    assert value("voice_channel_interruptions_total", runtime="echo") == before["interrupted"] + 1
    assert value("voice_channel_conversations_total", runtime="echo") == before["conversations"] + 1
    assert value("voice_channel_conversations_open", runtime="echo") == 0
    status, text = await scrape(channel)
    assert status == 200
    assert 'voice_channel_turns_total{runtime="echo"}' in text
    assert 'voice_channel_first_chunk_seconds_bucket{le="0.005",runtime="echo"}' in text


async def test_confirmations_are_counted_by_outcome(start_channel):
    channel = await start_channel(runtime="demo")
    asked, approved, denied = (
        value("voice_channel_confirmations_total", outcome=outcome) for outcome in ("asked", "approved", "denied")
    )
    async with conversation(channel) as client:
        await ask(client, "add milk")
        await ask(client, "remove milk")
        assert await ask(client, "yes") == "Removed milk."
        await ask(client, "add eggs")
        await ask(client, "remove eggs")
        assert await ask(client, "no") == "Okay, I kept eggs."
    assert value("voice_channel_confirmations_total", outcome="asked") == asked + 2
    assert value("voice_channel_confirmations_total", outcome="approved") == approved + 1
    assert value("voice_channel_confirmations_total", outcome="denied") == denied + 1


async def test_refused_handshakes_and_token_outcomes_are_counted(start_channel):
    channel = await start_channel(token={"rate_per_minute": 1})
    refused = value("voice_channel_auth_refusals_total", reason="missing_authorization_header")
    denied = value("voice_channel_token_requests_total", outcome="denied")
    limited = value("voice_channel_token_requests_total", outcome="rate_limited")
    async with aiohttp.ClientSession() as session:
        try:
            await session.ws_connect(channel.url)
        except aiohttp.WSServerHandshakeError as exc:
            assert exc.status == 401
        for _ in range(2):
            async with session.get(channel.server.make_url("/api/token")):
                pass
    assert value("voice_channel_auth_refusals_total", reason="missing_authorization_header") == refused + 1
    assert value("voice_channel_token_requests_total", outcome="denied") == denied + 1
    assert value("voice_channel_token_requests_total", outcome="rate_limited") == limited + 1


async def test_metrics_are_refused_to_proxied_requests_and_other_networks(start_channel):
    channel = await start_channel()
    assert (await scrape(channel, {"X-Forwarded-For": "127.0.0.1"}))[0] == 404
    assert (await scrape(channel, {"Forwarded": "for=127.0.0.1"}))[0] == 404
    elsewhere = await start_channel(metrics={"allowed_networks": ["10.0.0.0/8"]})
    assert (await scrape(elsewhere))[0] == 404


async def test_metrics_off_means_no_route_and_no_recording(start_channel):
    channel = await start_channel(metrics={"enabled": False})
    assert channel.app[STATE].metrics is NO_METRICS
    assert (await scrape(channel))[0] == 404


async def test_an_ipv4_peer_of_a_dual_stack_socket_is_matched_as_ipv4(make_settings):
    # gunicorn listens on [::] without IPV6_V6ONLY (aiohttp's worker serves its socket as a SockSite): an
    # IPv4 peer is then ::ffff:127.0.0.1, and a Prometheus on this host was refused as if it were elsewhere.
    import socket

    from aiohttp import web

    from voice_channel.app import create_app

    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(("::", 0))
    except OSError as exc:
        sock.close()
        pytest.skip(f"no dual-stack IPv6 socket here: {exc}")
    runner = web.AppRunner(create_app(make_settings()))
    await runner.setup()
    try:
        await web.SockSite(runner, sock).start()
        port = sock.getsockname()[1]
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/metrics") as resp:
            assert resp.status == 200
            assert "voice_channel_token_requests_total" in await resp.text()
    finally:
        await runner.cleanup()
