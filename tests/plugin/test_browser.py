"""The browser page in a real headless Chromium (Debian ``chromium``, driven by Playwright for Python).

Nothing here reaches the internet: ``--host-resolver-rules`` makes every host but 127.0.0.1 unresolvable, the
ElevenLabs REST API is the stand-in, LiveKit (WebRTC) is a local stand-in that refuses every join, and the
WebSocket transport talks to the stand-in's conversation socket. The microphone is Chromium's fake device.

Without Chromium (``CHROMIUM_BIN``, default /usr/bin/chromium) or the built page these tests skip, except
under CI (``CI`` set), where they fail.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from chromium_support import GRANT_MICROPHONE, Browser, chromium_launcher
from elevenlabs_standin import Fault, transcript_script
from support import Channel, ElevenLabsStandin

TIMEOUT_MS = 20_000

pytestmark = pytest.mark.slow


@pytest.fixture
async def chromium() -> AsyncIterator[Any]:
    """Start a Chromium: ``await chromium(microphone=True)`` returns a :class:`Browser`."""
    async with chromium_launcher(Browser, timeout_ms=TIMEOUT_MS, profile_prefix="voice-channel-chromium-") as launch:

        async def start(*, microphone: bool = True) -> Browser:
            args = [GRANT_MICROPHONE] if microphone else []
            return await launch(args, viewport={"width": 360, "height": 740})  # a phone

        yield start


@pytest.fixture
async def livekit() -> AsyncIterator[LiveKitStandin]:
    standin = LiveKitStandin()
    server = TestServer(standin.app(), host="127.0.0.1")
    await server.start_server()
    standin.url = str(server.make_url("")).rstrip("/").replace("http://", "ws://")
    yield standin
    await server.close()


class LiveKitStandin:
    """LiveKit's signalling endpoint, refusing every join: it accepts the WebSocket and closes it at once.

    The page must then say in plain words that it could not connect (a server that drops the signalling socket
    is something LiveKit clients have to handle anyway).
    """

    def __init__(self) -> None:
        self.url = ""
        self.joins: list[dict[str, str]] = []

    def app(self) -> web.Application:
        async def signal(request: web.Request) -> web.WebSocketResponse:
            self.joins.append({"path": request.path, **request.query})
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            await ws.close()
            return ws

        app = web.Application()
        app.router.add_get("/{tail:.*}", signal)
        return app


@pytest.fixture
def page_channel(start_channel, elevenlabs: ElevenLabsStandin):
    """A channel serving the page, its tokens coming from the stand-in."""

    async def start(*, engine: dict[str, Any] | None = None, token: dict[str, Any] | None = None, **rest: Any):
        engine_id = elevenlabs.add_engine(**(engine or {}))
        section = elevenlabs.settings(speech_engine_id=engine_id, **rest.pop("elevenlabs_extra", {}))
        token = {"allow_anonymous": True} if token is None else token
        ui = {"enabled": True, **rest.pop("ui", {})}
        return await start_channel(elevenlabs=section, token=token, ui=ui, **rest)

    return start


def page_url(channel: Channel) -> str:
    return str(channel.server.make_url("/"))


async def expect_text(browser: Browser, selector: str, text: str) -> None:
    from playwright.async_api import expect

    await expect(browser.page.locator(selector)).to_have_text(text, timeout=TIMEOUT_MS)


async def expect_state(browser: Browser, state: str) -> None:
    await browser.page.wait_for_selector(f"body[data-state={state}]", state="attached", timeout=TIMEOUT_MS)


# --- loading -----------------------------------------------------------------------------------------


async def test_the_page_loads_clean_keyboard_reachable_at_phone_width(page_channel, chromium):
    channel = await page_channel()
    browser = await chromium()
    response = await browser.page.goto(page_url(channel))
    assert response is not None and response.status == 200
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    await expect_state(browser, "idle")
    page = browser.page
    assert await page.title() == "Voice"
    assert await page.is_enabled("#start") and await page.is_disabled("#stop")
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.id") == "start"
    layout = await page.evaluate(
        "({scroll: document.documentElement.scrollWidth, width: window.innerWidth,"
        " start: document.getElementById('start').getBoundingClientRect().toJSON()})"
    )
    assert layout["scroll"] <= layout["width"] == 360  # nothing wider than a phone
    assert layout["start"]["height"] >= 44 and layout["start"]["right"] <= 360  # a finger-sized target, on screen
    assert await page.is_hidden("#error") and await page.is_hidden("#access")
    assert browser.problems() == []
    assert browser.foreign_requests() == []
    assert any(url.endswith("/static/app.js") for url in browser.requests)


# --- Start: tokens and their failures --------------------------------------------------------------------


async def test_start_asks_our_server_and_shows_an_upstream_failure_in_plain_words(page_channel, chromium, elevenlabs):
    channel = await page_channel()
    elevenlabs.state.faults.append(Fault(path="token", status=500, body="internal details", times=None))
    browser = await chromium()
    await browser.page.goto(page_url(channel))
    await expect_state(browser, "idle")
    await browser.page.keyboard.press("Tab")
    await browser.page.keyboard.press("Enter")  # Start, from the keyboard
    await expect_text(browser, "#error", "ElevenLabs had a problem. Try again in a minute.")
    await expect_text(browser, "#status", "Not connected.")
    await expect_state(browser, "idle")
    assert await browser.page.evaluate("document.activeElement.id") == "start"
    assert [url for url in browser.requests if "/api/" in url] == [str(channel.server.make_url("/api/token"))]
    assert len(elevenlabs.state.calls("GET", "conversation/token")) == 1
    # The only console line is Chromium's own network log of our 502, which no page can suppress.
    assert browser.problems() == [
        "error: Failed to load resource: the server responded with a status of 502 (Bad Gateway)"
        f" @ {channel.server.make_url('/api/token')}"
    ]
    assert browser.foreign_requests() == []


async def test_an_access_code_is_asked_for_and_a_token_then_goes_to_livekit(
    page_channel, chromium, elevenlabs, livekit
):
    channel = await page_channel(token={"bearer_secret": "open-sesame"}, elevenlabs_extra={"livekit_url": livekit.url})
    browser = await chromium()
    page = browser.page
    await page.goto(page_url(channel))
    await expect_state(browser, "idle")
    await page.click("#start")
    await expect_text(browser, "#error", "This page needs an access code. Enter it, then press Start.")
    assert await page.is_visible("#access")
    assert await page.evaluate("document.activeElement.id") == "access-code"

    await page.keyboard.type("open-sesamE")
    await page.keyboard.press("Enter")
    await expect_text(browser, "#error", "That access code is not right. Check it, then press Start again.")
    assert livekit.joins == [] and elevenlabs.state.calls("GET", "conversation/token") == []

    await page.fill("#access-code", "open-sesame")
    await page.keyboard.press("Enter")
    await expect_text(
        browser, "#error", "Could not connect to the voice service. Check your network, then press Start again."
    )
    await expect_state(browser, "idle")
    # Our server got a token from ElevenLabs (the stand-in) and the page took it to LiveKit (the stand-in).
    (token_call,) = elevenlabs.state.calls("GET", "conversation/token")
    assert token_call.query["agent_id"] == channel.settings.elevenlabs.speech_engine_id
    (join,) = livekit.joins
    assert join["path"].startswith("/rtc") and join["access_token"].count(".") == 2
    assert [p for p in browser.problems() if "status of 401" not in p] == []  # only the two refusals' network lines
    assert browser.foreign_requests() == []


async def test_a_livekit_failure_is_plain_words_and_no_console_error(page_channel, chromium, livekit):
    channel = await page_channel(elevenlabs_extra={"livekit_url": livekit.url})
    browser = await chromium()
    await browser.page.goto(page_url(channel))
    await expect_state(browser, "idle")
    await browser.page.click("#start")
    await expect_text(
        browser, "#error", "Could not connect to the voice service. Check your network, then press Start again."
    )
    assert len(livekit.joins) == 1
    assert browser.problems() == []
    assert browser.foreign_requests() == []


async def test_a_blocked_microphone_is_said_plainly_and_spends_no_token(page_channel, chromium, elevenlabs):
    channel = await page_channel()
    browser = await chromium(microphone=False)  # no permission: headless Chromium refuses the prompt
    await browser.page.goto(page_url(channel))
    await expect_state(browser, "idle")
    await browser.page.click("#start")
    await expect_text(
        browser,
        "#error",
        "The microphone is blocked. Allow it for this site (the icon next to the address), then press Start again.",
    )
    assert elevenlabs.state.calls("GET", "conversation/token") == []
    assert browser.problems() == []


# --- a conversation over the WebSocket transport -------------------------------------------------------------


async def test_a_signed_url_conversation_shows_the_transcript_and_stops(page_channel, chromium, elevenlabs):
    elevenlabs.state.script = transcript_script("add milk to my list", "Milk is on your list.")
    channel = await page_channel(
        token={"allow_anonymous": True, "transport": "websocket"},
        engine={"overrides": {"first_message": True}},
        ui={"first_message": "Hi! What shall I add?"},
    )
    browser = await chromium()
    page = browser.page
    await page.goto(page_url(channel))
    await expect_state(browser, "idle")
    await page.click("#start")
    await expect_state(browser, "connected")
    await expect_text(browser, "#transcript li:nth-child(1)", "Youadd milk to my list")
    await expect_text(browser, "#transcript li:nth-child(2)", "AssistantMilk is on your list.")
    assert await page.is_hidden("#transcript-empty")
    assert await page.evaluate("document.activeElement.id") == "stop"
    (initiation,) = elevenlabs.state.initiations
    assert initiation["type"] == "conversation_initiation_client_data"
    assert initiation["conversation_config_override"]["agent"] == {"first_message": "Hi! What shall I add?"}

    await page.keyboard.press("Enter")  # Stop has the focus
    await expect_state(browser, "idle")
    await expect_text(browser, "#status", "Conversation ended.")
    assert await page.is_hidden("#error")
    assert browser.problems() == []
    assert browser.foreign_requests() == []


@pytest.mark.parametrize(
    ("code", "status", "error"),
    [
        (1000, "The assistant ended the conversation.", None),
        (1011, "Conversation ended.", "The conversation was cut off. Press Start to talk again."),
    ],
)
async def test_the_end_of_a_conversation_is_explained(page_channel, chromium, elevenlabs, code, status, error):
    elevenlabs.state.script = transcript_script("bye", "Goodbye!")
    elevenlabs.state.hang_up = code
    channel = await page_channel(token={"allow_anonymous": True, "transport": "websocket"})
    browser = await chromium()
    await browser.page.goto(page_url(channel))
    await expect_state(browser, "idle")
    await browser.page.click("#start")
    await expect_text(browser, "#status", status)
    await expect_state(browser, "idle")
    assert await browser.page.is_hidden("#error") is (error is None)
    if error is not None:
        await expect_text(browser, "#error", error)
    await expect_text(browser, "#transcript li:nth-child(2)", "AssistantGoodbye!")
    assert browser.problems() == []


# --- a page on another origin (token.allowed_origins) -------------------------------------------------------


async def _other_origin_page() -> TestServer:
    """A site of the operator's, not this server: one blank page."""

    async def page(request: web.Request) -> web.Response:
        return web.Response(text="<!doctype html><title>app</title><p>app", content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


FETCH_TOKEN = """async ([url, code]) => {
  try {
    const response = await fetch(url, code ? {headers: {Authorization: `Bearer ${code}`}} : {});
    return {status: response.status, body: await response.json()};
  } catch (error) {
    return {blocked: String(error)};
  }
}"""


@pytest.mark.parametrize("code", [None, "open-sesame"], ids=["anonymous", "access-code"])
async def test_a_page_on_an_allowed_other_origin_gets_a_token(start_channel, elevenlabs, chromium, code):
    """``token.allowed_origins`` names the operator's own site: its page asks this server for a token across
    origins (with an access code the browser first sends a preflight). Without CORS the browser gave the
    page nothing to read."""
    site = await _other_origin_page()
    try:
        origin = str(site.make_url("")).rstrip("/")
        engine_id = elevenlabs.add_engine()
        token = {"allowed_origins": [origin], **({"bearer_secret": code} if code else {"allow_anonymous": True})}
        channel = await start_channel(elevenlabs=elevenlabs.settings(speech_engine_id=engine_id), token=token)
        browser = await chromium(microphone=False)
        await browser.page.goto(origin + "/")
        token_url = str(channel.server.make_url("/api/token"))
        result = await browser.page.evaluate(FETCH_TOKEN, [token_url, code])
        assert result.get("status") == 200, result
        assert result["body"].get("token") or result["body"].get("signed_url"), result
        if code:  # a wrong code is a 401 the page can read, not a blocked request
            wrong = await browser.page.evaluate(FETCH_TOKEN, [token_url, "wrong"])
            assert wrong.get("status") == 401 and wrong["body"]["code"] == "access_code_wrong", wrong
    finally:
        await site.close()


async def test_a_page_on_an_origin_not_allowed_reads_nothing(start_channel, elevenlabs, chromium):
    site = await _other_origin_page()
    try:
        engine_id = elevenlabs.add_engine()
        token = {"allowed_origins": ["https://app.example.com"], "allow_anonymous": True}
        channel = await start_channel(elevenlabs=elevenlabs.settings(speech_engine_id=engine_id), token=token)
        browser = await chromium(microphone=False)
        await browser.page.goto(str(site.make_url("/")))
        result = await browser.page.evaluate(FETCH_TOKEN, [str(channel.server.make_url("/api/token")), "x"])
        assert "blocked" in result, result
        assert elevenlabs.state.calls("GET", "conversation/token") == []
    finally:
        await site.close()
