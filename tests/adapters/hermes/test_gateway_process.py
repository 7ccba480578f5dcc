"""`hermes gateway run` as a user starts it (its own process, a fresh HERMES_HOME): the first call after the start,
and a start without an API key (issue 11, items 2 and 4)."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import aiohttp
import pytest
import yaml

from hermes_support import HERMES, HERMETIC_ENV, PLATFORM, PLUGIN, FakeLLM, hermes_cli, hermes_config
from processes import free_port, port_open, stop_process, wait_until
from voice_channel.elevenlabs.client import SpeechEngineClient
from voice_channel_hermes.settings import NO_KEY

pytestmark = pytest.mark.asyncio(loop_scope="session")


def gateway_home(tmp_path: Path, llm: FakeLLM, port: int) -> Path:
    home = tmp_path / "hermes-home"
    home.mkdir()
    extra = {"server": {"host": "127.0.0.1", "port": port, "path": "/voice"}}
    (home / "config.yaml").write_text(yaml.safe_dump(hermes_config(llm.base_url, extra=extra)))
    return home


def start_gateway(home: Path, log: Path, api_key: str | None) -> subprocess.Popen:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("ELEVENLABS_", "VOICE_CHANNEL_"))}
    env.update(HERMETIC_ENV, HERMES_HOME=str(home), GATEWAY_ALLOW_ALL_USERS="true")
    if api_key:
        env["ELEVENLABS_API_KEY"] = api_key
    hermes_cli("plugins", "enable", PLUGIN, "--no-allow-tool-override", env=env)
    with log.open("wb") as out:
        return subprocess.Popen(
            [HERMES, "gateway", "run"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


async def test_a_call_in_the_first_second_after_the_start_gets_hermes_answer(tmp_path, llm, api_key):
    # Issue 11, item 2: the upgrade was accepted while Hermes still queued messages (its startup restore), the
    # turn ended with an empty final and the answer came seconds later, into nothing.
    port = free_port()
    log = tmp_path / "gateway.log"
    process = start_gateway(gateway_home(tmp_path, llm, port), log, api_key)
    try:
        await asyncio.to_thread(
            wait_until, lambda: port_open(port), timeout=120, what="voice endpoint", process=process
        )
        refused: list[str] = []
        async with aiohttp.ClientSession() as http:
            # Call at once, and again on every refusal: the first accepted upgrade is the first call that counts.
            delay = 0.02
            while True:
                client = SpeechEngineClient(f"ws://127.0.0.1:{port}/voice", api_key=api_key)
                try:
                    await client.connect()
                    break
                except aiohttp.WSServerHandshakeError as exc:
                    assert exc.status == 503, exc
                    async with http.get(f"http://127.0.0.1:{port}/readyz") as probe:
                        refused.append(f"{probe.status} {(await probe.json()).get('reason')}")
                    assert process.poll() is None, log.read_text()
                    await asyncio.sleep(delay)  # re-dialling a peer that said "not yet" (a probe, not a sync)
                    delay = min(delay * 2, 0.2)
        try:
            await client.say("Hello there.")
            reply = await client.reply(timeout=60)
        finally:
            await client.disconnect()
        assert reply.text.strip().endswith("You said Hello there."), (reply.text, log.read_text()[-3000:])
        assert refused, "the endpoint took a call before Hermes could answer it"
        assert all(line.startswith("503 ") for line in refused), refused
    finally:
        stop_process(process)


async def test_without_a_key_only_the_voice_platform_stays_off_and_the_gateway_runs_on(tmp_path, llm):
    # Issue 11, item 4: a missing key used to be a non-retryable startup error, which stops the whole gateway when
    # voice is its only platform; and the message named a flag of `voice-channel serve`.
    log = tmp_path / "gateway.log"
    process = start_gateway(gateway_home(tmp_path, llm, free_port()), log, api_key=None)
    try:
        await asyncio.to_thread(
            wait_until,
            lambda: "Gateway will continue" in log.read_text(errors="replace"),
            timeout=120,
            what="gateway start without the voice platform",
            process=process,
        )
        assert process.poll() is None, "the gateway stopped"
        text = log.read_text(errors="replace")
        assert NO_KEY[:60] in text and f"platforms.{PLATFORM}.extra" in text
        assert "--insecure-no-auth" not in text and "non-retryable" not in text
    finally:
        stop_process(process)
