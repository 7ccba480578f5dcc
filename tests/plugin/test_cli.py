"""The command line, run as real processes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from cli_process import CLI, env, run, serve
from voice_channel.elevenlabs.client import SpeechEngineClient


def test_module_entry_point_exists():
    assert (Path(__file__).resolve().parents[2] / "plugin/voice_channel/cli/__main__.py").is_file()


async def test_serve_refuses_to_start_without_a_key():
    code, _out, err = await run("serve", "--port", "0")
    assert code == 2
    assert "no ElevenLabs API key: set ELEVENLABS_API_KEY" in err and "--insecure-no-auth" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "extra", "message"),
    [
        (["serve", "--port", "70000"], {}, "setting 'server.port'"),
        (["serve", "--runtime", "nope"], {}, "unknown runtime 'nope'; installed runtimes:"),
        (["serve"], {"VOICE_CHANNEL_TURN__FILLER_ENABLED": "maybe"}, "setting 'turn.filler_enabled'"),
        (["serve", "--config", "/does/not/exist.yaml"], {}, "config file not found"),
        # A runtime factory refusing at start-up (the Hermes runtime only runs inside Hermes's gateway).
        (["serve", "--runtime", "hermes"], {}, "runtime 'hermes' runs inside Hermes Agent's gateway"),
    ],
)
async def test_bad_settings_are_one_clear_line_no_traceback(args, extra, message):
    code, _out, err = await run(*args, ELEVENLABS_API_KEY="sk_x", **extra)
    assert code == 2
    assert message in err
    assert "Traceback" not in err


async def test_serve_insecure_warns_loudly_and_accepts_unsigned_conversations():
    served = await serve("--insecure-no-auth")
    try:
        async with SpeechEngineClient(served.url) as client:
            await client.say("unsigned")
            assert (await client.reply()).text == "You said: unsigned"
    finally:
        served.proc.send_signal(signal.SIGTERM)
        await served.proc.communicate()
    warning = next(e for e in served.startup if e["event"] == "INSECURE_NO_AUTH")
    assert warning["level"] == "warning" and "anyone who can reach this port" in warning["message"]


async def test_serve_health_then_sigterm_without_drain_closes_open_conversations_with_1001():
    key = "sk_cli_test_key_123456"
    served = await serve(
        "--runtime",
        "echo",
        ELEVENLABS_API_KEY=key,
        VOICE_CHANNEL_ECHO__DELAY_MS="200",
        VOICE_CHANNEL_SERVER__DRAIN_TIMEOUT_S="0",
    )
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{served.port}/healthz") as resp:
            assert resp.status == 200
            assert (await resp.json())["status"] == "ok"
    async with SpeechEngineClient(served.url, api_key=key) as client:
        await client.say("a slow reply with many words in it")
        first = await client.receive()
        assert first["event_id"] == 1
        served.proc.send_signal(signal.SIGTERM)
        frames = []
        while (frame := await client.receive()) != "closed":
            frames.append(frame)
        assert client.ws.close_code == 1001
    assert not any(f.get("is_final") for f in frames), "the interrupted turn must not end as if completed"
    code = await asyncio.wait_for(served.proc.wait(), 15)
    assert code == 0
    _, err = await served.proc.communicate()
    events = [json.loads(line)["event"] for line in err.decode().splitlines() if line.startswith("{")]
    assert events.index("conversation_ended") < events.index("runtime_stopped") < events.index("stopped")


async def test_serve_sigterm_drains_stops_listening_lets_the_turn_finish_then_1001():
    key = "sk_cli_test_key_drain1"
    served = await serve(
        "--runtime",
        "echo",
        ELEVENLABS_API_KEY=key,
        VOICE_CHANNEL_ECHO__DELAY_MS="100",
        VOICE_CHANNEL_SERVER__DRAIN_TIMEOUT_S="1.5",
    )
    async with SpeechEngineClient(served.url, api_key=key) as client:
        await client.say("one two three four five six")
        first = await client.receive()
        served.proc.send_signal(signal.SIGTERM)
        frames = [first]
        while not frames[-1].get("is_final"):
            frames.append(await client.receive())
        # The turn in flight finished in full during the drain...
        assert "".join(f["content"] for f in frames) == "You said: one two three four five six"
        # ...and nobody new gets in: the listening socket is closed.
        with pytest.raises(aiohttp.ClientConnectorError):
            async with aiohttp.ClientSession() as session:
                await session.get(f"http://127.0.0.1:{served.port}/readyz")
        loop = asyncio.get_running_loop()
        waited = loop.time()
        assert await client.receive() == "closed"
        assert client.ws.close_code == 1001
    assert await asyncio.wait_for(served.proc.wait(), 15) == 0
    _, err = await served.proc.communicate()
    events = [json.loads(line) for line in err.decode().splitlines() if line.startswith("{")]
    drained = next(e for e in events if e["event"] == "drained")
    assert drained["still_open"] == 1 and drained["cut_short"] is False
    assert drained["waited_s"] >= 1.5 and loop.time() - waited < 10


async def test_serve_second_sigterm_cuts_the_drain_short():
    key = "sk_cli_test_key_drain2"
    served = await serve(ELEVENLABS_API_KEY=key, VOICE_CHANNEL_SERVER__DRAIN_TIMEOUT_S="600")
    async with SpeechEngineClient(served.url, api_key=key) as client:
        await client.say("hello")
        assert (await client.reply()).text == "You said: hello"
        served.proc.send_signal(signal.SIGTERM)
        assert served.proc.stderr is not None
        while json.loads(await served.proc.stderr.readline())["event"] != "draining":
            pass
        served.proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(client.receive(), 10) == "closed"
        assert client.ws.close_code == 1001
    assert await asyncio.wait_for(served.proc.wait(), 15) == 0


async def test_talk_is_scriptable_and_exits_at_end_of_input():
    key = "sk_cli_test_key_abcdef"
    served = await serve(ELEVENLABS_API_KEY=key)
    try:
        code, out, err = await run(
            "talk", "--url", served.url, stdin=b"hello there\n\nsecond line\n", ELEVENLABS_API_KEY=key
        )
    finally:
        served.proc.send_signal(signal.SIGTERM)
        await served.proc.wait()
    assert code == 0, err
    assert out.splitlines() == [
        "you> hello there",
        "agent> You said: hello there",
        "you> second line",
        "agent> You said: second line",
    ]


async def test_talk_with_the_wrong_key_says_why():
    served = await serve(ELEVENLABS_API_KEY="sk_right_key_0000")
    try:
        code, _out, err = await run("talk", "--url", served.url, stdin=b"hi\n", ELEVENLABS_API_KEY="sk_wrong")
    finally:
        served.proc.send_signal(signal.SIGTERM)
        await served.proc.wait()
    assert code == 2
    assert "refused the conversation: HTTP 401" in err and "Traceback" not in err


async def test_talk_to_nothing_says_why():
    code, _out, err = await run("talk", "--url", "ws://127.0.0.1:9/ws", stdin=b"hi\n")
    assert code == 2 and "cannot connect" in err and "Traceback" not in err


async def test_demo_scripted_echo():
    code, out, err = await run("demo", "--runtime", "echo", stdin=b"testing one two\n")
    assert code == 0, err
    assert out.splitlines() == ["you> testing one two", "agent> You said: testing one two"]


async def test_plugins_lists_runtimes_and_hooks():
    code, out, err = await run("plugins", "--json")
    assert code == 0, err
    listing = json.loads(out)
    assert "echo" in listing["runtimes"]
    echo = next(p for p in listing["plugins"] if p["name"] == "echo")
    assert echo["builtin"] and "voice_channel_register_runtimes" in echo["hooks"]
    code, out, _ = await run("plugins")
    assert code == 0 and "Runtimes:" in out and "echo" in out


async def test_demo_defaults_to_the_list_assistant_and_shows_a_pending_confirmation():
    code, out, err = await run("demo", stdin=b"add milk\nwhat is on my list\nremove milk\nyes\n")
    assert code == 0, err
    assert out.splitlines() == [
        "you> add milk",
        "agent> Added milk.",
        "you> what is on my list",
        "agent> Your list has milk.",
        "you> remove milk",
        "agent> Confirmation needed: Remove milk from your list. Should I go ahead? Please say yes or no.",
        "   [confirmation pending: the agent is waiting for your answer: yes or no]",
        "you> yes",
        "agent> Removed milk.",
    ]


async def test_serve_exits_when_its_supervisor_closes_stdin():
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        "serve",
        "--port",
        "0",
        "--exit-on-stdin-eof",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env(VOICE_CHANNEL_LOG_FORMAT="json", ELEVENLABS_API_KEY="sk_cli_stdin"),
    )
    assert proc.stderr is not None and proc.stdin is not None
    while json.loads(await asyncio.wait_for(proc.stderr.readline(), 30)).get("event") != "listening":
        pass
    proc.stdin.close()
    assert await asyncio.wait_for(proc.wait(), 15) == 0
    events = [json.loads(line)["event"] for line in (await proc.stderr.read()).decode().splitlines()]
    assert events[0] == "stdin_closed" and events[-1] == "stopped"


STOP_ORDERS = {
    "sigterm": ("sigterm",),
    "stdin_eof": ("eof",),
    "sigterm_then_eof": ("sigterm", "eof"),
    "eof_then_sigterm": ("eof", "sigterm"),
    # A supervisor that signals the process group and then the child: the second SIGTERM comes late.
    "sigterm_then_sigterm_after_stopped": ("sigterm", "stopped", "sigterm"),
}


@pytest.mark.parametrize("order", list(STOP_ORDERS))
async def test_serve_under_a_supervisor_exits_0_and_closes_conversations_1001(order):
    """Issue 11, item 6: SIGTERM with the stdin pipe still open used to abort the interpreter (SIGABRT,
    "_enter_buffered_busy ... <stdin>"): a thread was blocked reading buffered stdin at shutdown."""
    key = "sk_cli_supervised"
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        "serve",
        "--port",
        "0",
        "--runtime",
        "echo",
        "--exit-on-stdin-eof",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env(VOICE_CHANNEL_LOG_FORMAT="json", ELEVENLABS_API_KEY=key),
    )
    assert proc.stderr is not None and proc.stdin is not None
    try:
        while (event := json.loads(await asyncio.wait_for(proc.stderr.readline(), 30))).get("event") != "listening":
            pass
        async with SpeechEngineClient(f"ws://127.0.0.1:{event['port']}/ws", api_key=key) as client:
            await client.say("hello")
            assert (await client.reply(timeout=30)).text == "You said: hello"
            lines: list[bytes] = []
            closed = False
            for step in STOP_ORDERS[order]:  # back to back, as a supervisor does it
                if step == "sigterm":
                    with contextlib.suppress(ProcessLookupError):
                        proc.send_signal(signal.SIGTERM)
                elif step == "eof":
                    proc.stdin.close()
                else:  # wait until the server has stopped: its signal handlers are gone
                    assert await client.receive(timeout=30) == "closed"
                    closed = True
                    while not lines or b'"stopped"' not in lines[-1]:
                        lines.append(await asyncio.wait_for(proc.stderr.readline(), 30))
                        assert lines[-1], "serve exited before it logged stopped"
            assert closed or await client.receive(timeout=30) == "closed"
            assert client.ws is not None and client.ws.close_code == 1001
        code = await asyncio.wait_for(proc.wait(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    err = b"".join(lines).decode() + (await proc.stderr.read()).decode()
    assert code == 0, err[-2000:]
    assert "Fatal Python error" not in err
    assert json.loads(err.splitlines()[-1])["event"] == "stopped"


async def test_serve_does_not_outlive_a_killed_supervisor(tmp_path):
    # The supervisor holds the pipe to serve's stdin and dies by SIGKILL (no chance to clean up):
    # serve must notice the closed pipe and exit, although its stdout/stderr pipes are broken too.
    supervisor = (
        "import subprocess, sys\n"
        f"p = subprocess.Popen({[*CLI, 'serve', '--port', '0', '--exit-on-stdin-eof']!r},"
        " stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)\n"
        "for line in p.stdout:\n"
        "    if b'listening' in line:\n"
        "        print(p.pid, flush=True)\n"
        "        break\n"
        "sys.stdin.read()\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        supervisor,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env=env(VOICE_CHANNEL_LOG_FORMAT="json", ELEVENLABS_API_KEY="sk_cli_orphan"),
    )
    assert proc.stdout is not None
    child = int(await asyncio.wait_for(proc.stdout.readline(), 30))
    proc.kill()
    await proc.wait()
    # serve is not our child: a pidfd becomes readable when it exits.
    try:
        pidfd = os.pidfd_open(child)
    except ProcessLookupError:
        return  # already gone
    exited = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_reader(pidfd, exited.set)
    try:
        await asyncio.wait_for(exited.wait(), 15)
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)


async def test_a_runtime_that_cannot_start_is_one_clear_line(tmp_path):
    key_file = tmp_path / "device.json"
    key_file.write_text("not a key")
    code, _out, err = await run(
        "serve",
        "--port",
        "0",
        "--runtime",
        "openclaw",
        ELEVENLABS_API_KEY="sk_x",
        VOICE_CHANNEL_OPENCLAW__DEVICE_KEY_PATH=str(key_file),
    )
    assert code == 2
    assert "setting 'openclaw.device_key_path'" in err and str(key_file) in err
    assert "Traceback" not in err


def test_interactive_demo_shows_each_typed_line_once():
    """On a terminal the line discipline echoes what is typed; the demo must not print it a second time."""
    import pty
    import select
    import subprocess
    import time

    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [*CLI, "demo", "--runtime", "echo", "--no-ui"],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env=env(),
        start_new_session=True,
    )
    os.close(terminal)
    screen = b""

    def read_until(marker: bytes, timeout: float = 30) -> None:
        nonlocal screen
        deadline = time.monotonic() + timeout
        while marker not in screen:
            ready, _, _ = select.select([controller], [], [], max(0.0, deadline - time.monotonic()))
            assert ready, f"no {marker!r} on the terminal; it shows {screen.decode(errors='replace')!r}"
            screen += os.read(controller, 4096)

    try:
        read_until(b"Ctrl-D ends the conversation.\r\nyou> ")  # the prompt: the demo waits for a line
        os.write(controller, b"testing one two\r")
        read_until(b"agent> You said: testing one two\r\n")
        read_until(b"agent> You said: testing one two\r\nyou> ")  # the next prompt
        os.write(controller, b"\x04")  # Ctrl-D: end of input ends the demo
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(controller)
    text = screen.decode().replace("\r\n", "\n")
    assert text.count("testing one two") == 2, text  # the echo of the typing, and the reply; no "you> testing…"
    assert "you> testing one two\nagent> You said: testing one two\nyou> " in text


async def test_demo_in_the_background_keeps_serving_the_page_until_sigterm():
    """stdin at /dev/null (``make demo &``): nothing can be typed, so the page stays up, with no error logged."""
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        "demo",
        "--runtime",
        "echo",
        "--no-voice",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env(),
    )
    assert proc.stderr is not None
    lines: list[str] = []
    try:
        page = None
        while not lines or "serving the page until" not in lines[-1]:
            line = (await asyncio.wait_for(proc.stderr.readline(), 60)).decode()
            assert line, f"the demo ended: {lines}"
            lines.append(line)
            if "browser page at " in line:
                page = line.split("browser page at ")[1].split()[0]
        assert page is not None, lines
        # The server behind the page is up (the page itself is there only once `make web` built it).
        async with aiohttp.ClientSession() as session, session.get(f"{page}readyz") as response:
            assert response.status == 200
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0
    assert "Traceback" not in err.decode() and "Exception in callback" not in err.decode()


async def test_serve_with_a_numeric_top_level_key_has_no_traceback(tmp_path):
    config = tmp_path / "voice.yaml"
    config.write_text("1: 2\n")
    code, _out, err = await run("serve", "--config", str(config), ELEVENLABS_API_KEY="sk_x")
    assert "Traceback" not in err
    assert code == 2 and str(config) in err


async def test_talk_with_a_header_holding_a_line_break_is_a_clear_error():
    code, _out, err = await run("talk", "--url", "ws://127.0.0.1:9/ws", "--header", "x-a:b\r\nx-evil: 1")
    assert "Traceback" not in err
    assert code == 2 and "--header" in err


@pytest.mark.parametrize("value", ["-1", "0"])
async def test_talk_refuses_a_reply_timeout_that_is_not_positive(value):
    # Was: exit 0 after "[no reply within -1s]" (twice), the line never answered.
    code, _out, err = await run("talk", "--url", "ws://127.0.0.1:9/ws", "--reply-timeout", value)
    assert code == 2 and "--reply-timeout" in err


@pytest.mark.parametrize("url", ["notaurl", "ws://127.0.0.1:99999/ws"])
async def test_talk_says_what_is_wrong_with_a_malformed_url(url):
    # Was: "cannot connect to notaurl: notaurl" (the URL twice, no reason).
    code, _out, err = await run("talk", "--url", url)
    assert code == 2 and "--url" in err and "ws://" in err
