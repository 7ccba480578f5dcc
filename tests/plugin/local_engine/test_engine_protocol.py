"""The engine's two protocols at their edges: signed URLs, handshakes, cascade re-sends, failures."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from speech_engine_probe import SpeechEngineProbe
from support import ScriptedPlugin
from voice_channel.local_engine.probe import ConvaiProbe

pytestmark = pytest.mark.timeout(120)


async def test_signed_url_needs_the_key_and_an_agent_and_is_single_use(start_channel, start_engine):
    channel = await start_channel(runtime="demo")
    local = await start_engine(channel.url)
    endpoint = f"{local.base_url}/v1/convai/conversation/get-signed-url"
    async with aiohttp.ClientSession() as session:
        async with session.get(endpoint, params={"agent_id": "a"}, headers={"xi-api-key": "wrong"}) as response:
            assert response.status == 401
        async with session.get(endpoint, headers={"xi-api-key": local.config.api_key.get_secret_value()}) as response:
            assert response.status == 422
        signed = await local.signed_url()
        assert "conversation_signature=" in signed and signed.startswith("ws://")
        async with ConvaiProbe(signed) as browser:
            assert browser.metadata is not None
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            async with ConvaiProbe(signed):
                pass
        assert refused.value.status == 403


async def test_the_official_sdk_gets_a_signed_url_from_the_engine(start_channel, start_engine):
    import httpx
    from elevenlabs import AsyncElevenLabs

    channel = await start_channel(runtime="demo")
    local = await start_engine(channel.url)
    async with httpx.AsyncClient() as http:
        client = AsyncElevenLabs(
            base_url=local.base_url, api_key=local.config.api_key.get_secret_value(), httpx_client=http
        )
        response = await client.conversational_ai.conversations.get_signed_url(agent_id="agent_local")
    assert response.signed_url.startswith(f"{local.base_url.replace('http', 'ws')}/v1/convai/conversation?")
    async with ConvaiProbe(response.signed_url) as browser:
        assert browser.metadata["agent_output_audio_format"] == "pcm_16000"  # type: ignore[index]


async def test_the_first_client_frame_must_be_the_initiation(start_channel, start_engine):
    channel = await start_channel(runtime="demo")
    local = await start_engine(channel.url)
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(await local.signed_url(), protocols=("convai",)) as ws,
    ):
        assert ws.protocol == "convai"
        await ws.send_str('{"user_audio_chunk": ""}')
        message = await ws.receive()
        assert message.type is aiohttp.WSMsgType.CLOSE
        assert ws.close_code == 1008


async def test_unreachable_channel_closes_the_browser_with_the_reason(start_engine):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    local = await start_engine(f"ws://127.0.0.1:{port}/ws")
    browser = ConvaiProbe(await local.signed_url())
    with pytest.raises(ConnectionError):
        await browser.connect()
    await browser.aclose()
    assert browser.close_code == 1011
    assert "cannot reach the channel" in browser.close_reason


async def test_a_wrong_key_is_refused_by_the_channel_and_reported(start_channel, start_engine):
    channel = await start_channel(runtime="demo")
    local = await start_engine(channel.url, api_key="sk_not_the_channels_key")
    browser = ConvaiProbe(await local.signed_url())
    with pytest.raises(ConnectionError):
        await browser.connect()
    await browser.aclose()
    assert browser.close_code == 1011
    assert "HTTP 401" in browser.close_reason and "API key" in browser.close_reason


async def test_a_turn_without_text_in_time_is_sent_again_with_the_same_id(start_channel, start_engine, speak):
    async def slow(message, recorder):  # type: ignore[no-untyped-def]
        await recorder.release.wait()
        yield "Here you are."

    plugin = ScriptedPlugin(slow)
    channel = await start_channel(
        plugins=[plugin], runtime="scripted", turn={"filler_enabled": False, "first_text_deadline_s": 10}
    )
    probe = SpeechEngineProbe(channel.url)
    local = await start_engine(await probe.start(), cascade_timeout_s=1.0)
    try:
        async with ConvaiProbe(await local.signed_url()) as browser:
            browser.say(speak("Hello there."))
            await probe.wire.wait(lambda w: len(w.up("user_transcript")) >= 2)
            plugin.recorder.release.set()
            reply = await browser.wait_type("agent_response")
            assert reply.event()["agent_response"] == "Here you are."
            await browser.wait_type("audio", event_id=reply.event()["event_id"])
            metrics = await browser.wait_type("local_engine_metrics")
            assert metrics.event()["sends"] == 2
        first, again = probe.wire.up("user_transcript")[:2]
        assert first == again, "a re-send repeats the same event_id and history"
        assert len(plugin.recorder.messages) == 1, "the channel keeps the turn it is working on"
    finally:
        plugin.recorder.release.set()
        await probe.close()


async def test_a_turn_that_never_gets_text_fails_the_conversation(start_channel, start_engine, speak):
    async def silent(message, recorder):  # type: ignore[no-untyped-def]
        await recorder.release.wait()
        yield "too late"

    plugin = ScriptedPlugin(silent)
    channel = await start_channel(
        plugins=[plugin], runtime="scripted", turn={"filler_enabled": False, "first_text_deadline_s": 10}
    )
    probe = SpeechEngineProbe(channel.url)
    local = await start_engine(await probe.start(), cascade_timeout_s=0.5, cascade_attempts=3)
    try:
        async with ConvaiProbe(await local.signed_url()) as browser:
            browser.say(speak("Hello there."))
            error = await browser.wait_type("error")
            assert error.event()["error_type"] == "cascade_failed"
            await asyncio.wait_for(browser.closed.wait(), 10)
            assert browser.close_code == 1011
        assert len(probe.wire.up("user_transcript")) == 3
        await probe.wire.wait(lambda w: w.up("close"))
    finally:
        plugin.recorder.release.set()
        await probe.close()


async def test_pings_answered_and_unknown_client_events_ignored(start_channel, start_engine, speak):
    channel = await start_channel(runtime="demo")
    local = await start_engine(channel.url, ping_interval_s=0.2)
    async with ConvaiProbe(await local.signed_url()) as browser:
        await browser.wait_type("ping")
        await browser._ws.send_str('{"type":"user_activity"}')  # type: ignore[union-attr]
        await browser._ws.send_str("not json")  # type: ignore[union-attr]
        await browser._ws.send_str('{"type":"user_message","text":"add milk"}')  # type: ignore[union-attr]
        reply = await browser.wait_type("agent_response")
        assert reply.event()["agent_response"] == "Added milk."
        second = await browser.wait_for(lambda r: r.type == "ping" and r.event()["ping_ms"] is not None)
        assert second.event()["ping_ms"] >= 0


async def test_espeak_fallback_speaks(start_channel, start_engine, speak, speech_models):
    from voice_channel.local_engine.audio import resample
    from voice_channel.local_engine.speech import SpeechModels
    from voice_channel.local_engine.tts import Synthesizer

    espeak = SpeechModels(speech_models.transcriber, Synthesizer("espeak"), 16000)
    from aiohttp.test_utils import TestServer

    from voice_channel.local_engine.app import create_engine_app
    from voice_channel.local_engine.config import LocalEngineConfig

    channel = await start_channel(runtime="demo")
    config = LocalEngineConfig(channel_url=channel.url, api_key=channel.api_key, tts="espeak")
    server = TestServer(create_engine_app(config, espeak), host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(
                server.make_url("/v1/convai/conversation/get-signed-url"),
                params={"agent_id": "x"},
                headers={"xi-api-key": channel.api_key},
            ) as response:
                signed = (await response.json())["signed_url"]
        async with ConvaiProbe(signed) as browser:
            browser.say(speak("Please add milk to my list."))
            reply = await browser.wait_type("agent_response")
            event_id = reply.event()["event_id"]
            await browser.wait_type("audio", event_id=event_id)
            await browser.listen()
            heard = speech_models.transcriber.transcribe(resample(browser.audio(event_id), 16000, 16000)).text
            assert "milk" in heard.lower()
    finally:
        espeak.close()
        await server.close()
