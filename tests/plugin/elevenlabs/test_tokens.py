"""GET /api/token: the built-in policy, the rate limit, upstream failures in plain words, no key ever leaked."""

from __future__ import annotations

import io
import json
import logging
import socket
from typing import Any

import aiohttp
import pytest
import structlog

from elevenlabs_standin import Fault
from support import ElevenLabsStandin, get_token
from voice_channel.elevenlabs.ratelimit import RateLimiter
from voice_channel.logging import configure_logging

SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin"}


@pytest.fixture
def token_channel(start_channel, elevenlabs: ElevenLabsStandin):
    """A channel whose token endpoint talks to the stand-in, for an engine that exists there."""

    async def start(*, token: dict[str, Any] | None = None, elevenlabs_extra: dict[str, Any] | None = None, **rest):
        engine_id = elevenlabs.add_engine()
        section = elevenlabs.settings(speech_engine_id=engine_id, **(elevenlabs_extra or {}))
        token = {"allow_anonymous": True} if token is None else token
        return await start_channel(elevenlabs=section, token=token, **rest)

    return start


def token_requests(elevenlabs: ElevenLabsStandin):
    return elevenlabs.state.calls("GET", r"^/v1/convai/conversation/token$")


# --- allowed ---------------------------------------------------------------------------------------


async def test_a_same_origin_page_gets_a_webrtc_token(token_channel, elevenlabs, api_key):
    channel = await token_channel()
    status, body, headers = await get_token(channel, SAME_ORIGIN)
    assert status == 200
    assert set(body) == {"token", "conversation_id"}
    assert body["token"].count(".") == 2 and body["conversation_id"].startswith("conv_")
    assert headers["Cache-Control"] == "no-store"
    (call,) = token_requests(elevenlabs)
    assert call.query == {"agent_id": channel.settings.elevenlabs.speech_engine_id}
    assert call.headers["xi-api-key"] == api_key


async def test_an_origin_header_must_be_this_server_or_an_allowed_one(token_channel, elevenlabs):
    channel = await token_channel()
    own = str(channel.server.make_url("/").origin())
    assert (await get_token(channel, {"Origin": own}))[0] == 200

    listed = await token_channel(token={"allow_anonymous": True, "allowed_origins": ["https://voice.example.com"]})
    assert (await get_token(listed, {"Origin": "https://voice.example.com"}))[0] == 200
    assert (await get_token(listed, {"Origin": "https://VOICE.example.com:443"}))[0] == 200  # same origin
    status, body, _ = await get_token(listed, {"Origin": str(listed.server.make_url("/").origin())})
    assert (status, body["code"]) == (403, "origin_not_allowed")  # an explicit list replaces the default

    public = await token_channel(server={"public_url": "https://voice.example.com"})
    assert (await get_token(public, {"Origin": "https://voice.example.com"}))[0] == 200
    assert (await get_token(public, {"Origin": str(public.server.make_url("/").origin())}))[0] == 403


# --- refused ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({"Origin": "https://evil.example.com"}, "origin_not_allowed"),
        ({"Origin": "null"}, "origin_not_allowed"),
        ({"Origin": "https://evil.example.com", "Sec-Fetch-Site": "same-origin"}, "origin_not_allowed"),
        ({"Sec-Fetch-Site": "cross-site"}, "origin_required"),
        ({}, "origin_required"),
    ],
)
async def test_a_wrong_or_missing_origin_is_refused_in_plain_words(token_channel, elevenlabs, headers, code):
    channel = await token_channel()
    status, body, _ = await get_token(channel, headers)
    assert status == 403
    assert body["code"] == code
    assert "not allowed" in body["error"] or "own address" in body["error"]
    assert token_requests(elevenlabs) == []  # nothing spent upstream


async def test_a_bearer_secret_is_required_when_configured(token_channel, elevenlabs):
    channel = await token_channel(token={"bearer_secret": "open-sesame-42"})
    status, body, headers = await get_token(channel, SAME_ORIGIN)
    assert (status, body["code"]) == (401, "access_code_required")
    assert body["error"] == "This page needs an access code. Enter it, then press Start."
    assert headers["WWW-Authenticate"].startswith("Bearer")

    status, body, _ = await get_token(channel, {**SAME_ORIGIN, "Authorization": "Bearer open-sesame-43"})
    assert (status, body["code"]) == (401, "access_code_wrong")
    status, body, _ = await get_token(channel, {**SAME_ORIGIN, "Authorization": "Basic open-sesame-42"})
    assert (status, body["code"]) == (401, "access_code_required")
    assert token_requests(elevenlabs) == []

    status, body, _ = await get_token(channel, {**SAME_ORIGIN, "Authorization": "bearer open-sesame-42"})
    assert status == 200 and "token" in body
    status, _, _ = await get_token(
        channel, {"Origin": "https://evil.example.com", "Authorization": "Bearer open-sesame-42"}
    )
    assert status == 403  # the secret does not replace the origin check


async def test_without_secret_or_anonymous_access_no_token_is_issued(token_channel, elevenlabs):
    channel = await token_channel(token={})
    status, body, _ = await get_token(channel, SAME_ORIGIN)
    assert (status, body["code"]) == (403, "not_enabled")
    assert token_requests(elevenlabs) == []


async def test_requests_over_the_rate_are_refused_per_client(token_channel, elevenlabs):
    channel = await token_channel(
        token={"allow_anonymous": True, "rate_per_minute": 2}, server={"trusted_proxy_hops": 1}
    )
    first = {**SAME_ORIGIN, "X-Forwarded-For": "203.0.113.7"}
    assert (await get_token(channel, first))[0] == 200
    assert (await get_token(channel, {"X-Forwarded-For": "203.0.113.7"}))[0] == 403  # refusals count too
    status, body, headers = await get_token(channel, first)
    assert (status, body["code"]) == (429, "rate_limited")
    assert body["error"].startswith("Too many attempts")
    assert 1 <= int(headers["Retry-After"]) <= 60
    # Another client behind the same proxy has its own allowance; a forged left-most entry changes nothing.
    assert (await get_token(channel, {**SAME_ORIGIN, "X-Forwarded-For": "198.51.100.1"}))[0] == 200
    forged = {**SAME_ORIGIN, "X-Forwarded-For": "10.9.9.9, 203.0.113.7"}
    assert (await get_token(channel, forged))[0] == 429
    assert len(token_requests(elevenlabs)) == 2


def test_the_rate_limiter_refills_over_time():
    now = [100.0]
    limiter = RateLimiter(6, clock=lambda: now[0], max_clients=2)
    assert [limiter.acquire("a") for _ in range(6)] == [None] * 6
    wait = limiter.acquire("a")
    assert wait == pytest.approx(10.0)  # 6 a minute: one every 10 s
    now[0] += 10.0
    assert limiter.acquire("a") is None
    assert limiter.acquire("a") is not None
    limiter.acquire("b")
    limiter.acquire("c")  # "a" is forgotten: at most two clients are tracked
    assert limiter.acquire("a") is None


# --- configuration and upstream failures -------------------------------------------------------------


async def test_missing_configuration_is_said_plainly(start_channel, elevenlabs):
    no_key = await start_channel(
        elevenlabs={"api_key": None}, token={"allow_anonymous": True}, auth={"insecure_no_auth": True}
    )
    status, body, _ = await get_token(no_key, SAME_ORIGIN)
    assert (status, body["code"]) == (503, "not_configured") and "no ElevenLabs key" in body["error"]
    no_engine = await start_channel(elevenlabs=elevenlabs.settings(), token={"allow_anonymous": True})
    status, body, _ = await get_token(no_engine, SAME_ORIGIN)
    assert (status, body["code"]) == (503, "not_configured") and "no Speech Engine" in body["error"]


MARKER = "UPSTREAM-BODY-MUST-NOT-LEAK"


@pytest.mark.parametrize(
    ("fault", "status", "code", "words"),
    [
        (Fault(status=401, body={"detail": {"status": "invalid_api_key", "message": MARKER}}), 502, "auth", "API key"),
        (Fault(status=404, body={"detail": MARKER}), 502, "not_found", "Speech Engine"),
        (
            Fault(status=422, body={"detail": [{"loc": ["query"], "msg": MARKER, "type": "x"}]}),
            502,
            "invalid",
            "invalid",
        ),
        (Fault(status=429, body={"detail": MARKER}), 503, "busy", "busy"),
        (Fault(status=500, body=MARKER), 502, "upstream_error", "had a problem"),
        (Fault(status=503, body={"detail": MARKER}), 502, "upstream_error", "had a problem"),
        (Fault(status=200, body=f"<html>{MARKER}</html>"), 502, "bad_response", "cannot read"),
        (Fault(status=200, body={"conversation_id": MARKER}), 502, "bad_response", "cannot read"),
        (Fault(status=418, body={"detail": MARKER}), 502, "refused", "HTTP 418"),
        (Fault(hang=True), 504, "timeout", "did not answer in time"),
    ],
)
async def test_upstream_failures_become_clear_json_errors(
    token_channel, elevenlabs, capture, fault, status, code, words
):
    fault.path = r"^/v1/convai/conversation/token$"
    elevenlabs.state.faults.append(fault)
    channel = await token_channel(elevenlabs_extra={"timeout_s": 0.5})
    got, body, _ = await get_token(channel, SAME_ORIGIN)
    assert (got, body["code"]) == (status, code)
    assert set(body) == {"error", "code"} and words in body["error"]
    assert MARKER not in json.dumps(body)
    assert MARKER not in capture.text()
    (line,) = [event for event in capture.events if event["event"] == "token_upstream_failed"]
    assert line["kind"] == code


async def test_an_unreachable_elevenlabs_is_a_clear_error(token_channel):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    channel = await token_channel(elevenlabs_extra={"base_url": f"http://127.0.0.1:{port}"})
    status, body, _ = await get_token(channel, SAME_ORIGIN)
    assert (status, body["code"]) == (502, "unreachable")
    assert body["error"] == "The server cannot reach ElevenLabs right now."


# --- what a page may get beyond the token ----------------------------------------------------------------


async def test_websocket_transport_hands_out_a_signed_url(token_channel, elevenlabs):
    channel = await token_channel(token={"allow_anonymous": True, "transport": "websocket"})
    status, body, _ = await get_token(channel, SAME_ORIGIN)
    assert status == 200 and set(body) == {"signed_url"}
    assert body["signed_url"].startswith("ws://") and "conversation_signature=" in body["signed_url"]
    assert elevenlabs.state.calls("GET", "get-signed-url")[0].query["agent_id"].startswith("seng_")


async def test_livekit_url_is_passed_to_the_page(token_channel):
    channel = await token_channel(elevenlabs_extra={"livekit_url": "wss://livekit.rtc.eu.residency.elevenlabs.io"})
    _, body, _ = await get_token(channel, SAME_ORIGIN)
    assert body["livekit_url"] == "wss://livekit.rtc.eu.residency.elevenlabs.io"


async def test_the_first_message_goes_to_the_page_only_if_the_engine_allows_it(start_channel, elevenlabs, capture):
    allowing = elevenlabs.add_engine(overrides={"first_message": True})
    refusing = elevenlabs.add_engine()
    token = {"allow_anonymous": True}
    ui = {"first_message": "Hello! What can I add to your list?"}

    channel = await start_channel(elevenlabs=elevenlabs.settings(speech_engine_id=allowing), token=token, ui=ui)
    for _ in range(2):
        _, body, _ = await get_token(channel, SAME_ORIGIN)
        assert body["first_message"] == "Hello! What can I add to your list?"
    assert len(elevenlabs.state.calls("GET", rf"^/v1/speech-engine/{allowing}$")) == 1  # asked once, then cached

    channel = await start_channel(elevenlabs=elevenlabs.settings(speech_engine_id=refusing), token=token, ui=ui)
    _, body, _ = await get_token(channel, SAME_ORIGIN)
    assert "first_message" not in body and "token" in body
    assert any(e["event"] == "first_message_not_allowed" for e in capture.events)

    without = await start_channel(elevenlabs=elevenlabs.settings(speech_engine_id=allowing), token=token)
    _, body, _ = await get_token(without, SAME_ORIGIN)
    assert "first_message" not in body


# --- the API key never leaves the server ------------------------------------------------------------------


class Capture:
    """Every structlog event (before any redaction) and every rendered line, plus stdlib log records."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.stream = io.StringIO()
        self.records: list[str] = []

    def text(self) -> str:
        return json.dumps(self.events, default=repr) + self.stream.getvalue() + "\n".join(self.records)


@pytest.fixture
def capture() -> Any:
    """Production logging (JSON, with no secrets given to the redactor), all raw events, stdlib at DEBUG."""
    captured = Capture()

    def keep(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
        captured.events.append(dict(event))
        return event

    configure_logging("debug", "json", stream=captured.stream, cache=False)
    config = structlog.get_config()
    structlog.configure(processors=[structlog.contextvars.merge_contextvars, keep, *config["processors"][1:]])

    class Records(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            captured.records.append(self.format(record) + repr(record.__dict__))

    handler = Records(level=logging.DEBUG)
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield captured
    root.removeHandler(handler)
    root.setLevel(previous)


async def test_no_response_or_log_line_ever_contains_the_api_key(start_channel, elevenlabs, api_key, capture):
    engine_id = elevenlabs.add_engine(overrides={"first_message": True})
    section = elevenlabs.settings(speech_engine_id=engine_id, timeout_s=0.5)
    channel = await start_channel(
        elevenlabs=section,
        token={"bearer_secret": "code-1234", "rate_per_minute": 100},
        ui={"enabled": True, "first_message": "Hi"},
    )
    ok = {**SAME_ORIGIN, "Authorization": "Bearer code-1234"}
    bodies = []
    for fault in [
        None,
        Fault(status=401),
        Fault(status=500, body=api_key),
        Fault(status=200, body="x"),
        Fault(hang=True),
    ]:
        if fault is not None:
            fault.path = "token"
            elevenlabs.state.faults.append(fault)
        bodies.append(await get_token(channel, ok))
    bodies.append(await get_token(channel, SAME_ORIGIN))
    bodies.append(await get_token(channel, {"Origin": "https://evil.example.com"}))
    async with aiohttp.ClientSession() as session:
        for path in ("/", "/static/app.js", "/healthz", "/nope"):
            async with session.get(channel.server.make_url(path)) as response:
                bodies.append((response.status, await response.read(), response.headers))
    assert [b[0] for b in bodies[:7]] == [200, 502, 502, 502, 504, 401, 403]
    for status, body, headers in bodies:
        assert api_key not in repr(body) and api_key not in repr(dict(headers)), status
    assert capture.events and capture.records  # the capture really saw the traffic
    assert api_key not in capture.text()
    assert any(e["event"] == "token_upstream_failed" for e in capture.events)


async def test_only_get_spends_a_token(token_channel, elevenlabs):
    channel = await token_channel()
    async with aiohttp.ClientSession() as session:
        for method in ("HEAD", "POST"):
            async with session.request(method, channel.server.make_url("/api/token"), headers=SAME_ORIGIN) as response:
                assert response.status == 405, method
    assert token_requests(elevenlabs) == []


async def test_an_ipv6_client_cannot_get_round_the_limit_by_changing_address(token_channel, elevenlabs):
    # Any IPv6 host can use every address of its /64; each one had its own allowance.
    channel = await token_channel(
        token={"allow_anonymous": True, "rate_per_minute": 1}, server={"trusted_proxy_hops": 1}
    )
    statuses = [
        (await get_token(channel, {**SAME_ORIGIN, "X-Forwarded-For": f"2001:db8:1:2::{n:x}"}))[0] for n in range(1, 4)
    ]
    assert statuses == [200, 429, 429]
    assert (await get_token(channel, {**SAME_ORIGIN, "X-Forwarded-For": "2001:db8:1:3::1"}))[0] == 200
    assert len(token_requests(elevenlabs)) == 2


async def test_cors_grants_only_an_allowed_origin_and_a_preflight_spends_nothing(token_channel, elevenlabs):
    """A page on an allowed other origin reads the answer (the browser test shows it); any other gets no grant."""
    channel = await token_channel(token={"bearer_secret": "s3cret", "allowed_origins": ["https://app.example.com"]})
    url = channel.server.make_url("/api/token")
    preflight = {"Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"}
    async with aiohttp.ClientSession() as session:
        async with session.options(url, headers={"Origin": "https://app.example.com", **preflight}) as response:
            assert response.status == 204
            assert response.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
            assert response.headers["Access-Control-Allow-Headers"] == "Authorization"
            assert "Access-Control-Allow-Credentials" not in response.headers
        for origin, method in [("https://evil.example", "GET"), ("https://app.example.com", "POST")]:
            headers = {"Origin": origin, **preflight, "Access-Control-Request-Method": method}
            async with session.options(url, headers=headers) as response:
                assert response.status == 403, (origin, method)
                assert "Access-Control-Allow-Origin" not in response.headers
    evil = {"Origin": "https://evil.example", "Authorization": "Bearer s3cret"}
    status, body, headers = await get_token(channel, evil)
    assert (status, body["code"]) == (403, "origin_not_allowed")
    assert "Access-Control-Allow-Origin" not in headers and headers["Vary"] == "Origin"
    status, body, headers = await get_token(channel, {"Origin": "https://app.example.com"})
    assert (status, body["code"]) == (401, "access_code_required")  # readable by the page: it can ask for the code
    assert headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert token_requests(elevenlabs) == []
