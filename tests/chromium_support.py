"""Headless Debian Chromium driven by Playwright, shared by the page tests and the spoken-conversation tests.

Nothing reaches the internet: ``--host-resolver-rules`` makes every host but 127.0.0.1 unresolvable (Playwright's
request events do not see audio worklet fetches, so blocking is the only proof nothing foreign is loaded). Chromium
(``CHROMIUM_BIN``, default /usr/bin/chromium), the built page and Playwright are required: without them the tests
skip, except under ``make test`` or CI, where they fail (:func:`processes.must_run`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from processes import require
from voice_channel.elevenlabs.page import bundle_missing

CHROMIUM = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-device-for-media-stream",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
]
#: Grants the microphone without asking (the fake device plays silence, or a WAV given with
#: ``--use-file-for-fake-audio-capture``).
GRANT_MICROPHONE = "--use-fake-ui-for-media-stream"
_LOCAL = ("http://127.0.0.1:", "ws://127.0.0.1:", "data:", "blob:")

#: An init script that gives the page a microphone the test speaks into: ``getUserMedia({audio})`` returns a
#: track of a Web Audio graph that is silent until ``window.__testMicrophone.say(base64_pcm, rate)`` plays 16-bit
#: mono PCM into it (after anything still playing; the promise resolves when it has played). Unlike Chromium's
#: fake capture file, whose timeline is fixed when the browser starts, the test says each utterance when the
#: engine has done what it waits for, and the microphone is silent for as long as that takes.
TEST_MICROPHONE = """
(() => {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) return;
  const original = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  let context = null;
  let destination = null;
  let next = 0;
  async function microphone() {
    if (context === null) {
      context = new AudioContext();
      destination = context.createMediaStreamDestination();
    }
    await context.resume();
    return new MediaStream(destination.stream.getAudioTracks().map((track) => track.clone()));
  }
  navigator.mediaDevices.getUserMedia = (constraints) =>
    constraints && constraints.audio ? microphone() : original(constraints);
  window.__testMicrophone = {
    say(base64, rate) {
      if (context === null) throw new Error("the page has not opened the microphone yet");
      const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
      const samples = new Int16Array(bytes.buffer);
      const buffer = context.createBuffer(1, samples.length, rate);
      const channel = buffer.getChannelData(0);
      for (let i = 0; i < samples.length; i += 1) channel[i] = samples[i] / 32768;
      const source = context.createBufferSource();
      source.buffer = buffer;
      source.connect(destination);
      const at = Math.max(context.currentTime, next);
      next = at + buffer.duration;
      const played = new Promise((resolve) => { source.onended = () => resolve(); });
      source.start(at);
      return played;
    },
  };
})();
"""


def _unavailable(reason: str) -> None:
    require(False, reason)


def require_chromium() -> None:
    """Skip (fail under CI) unless Chromium, the built page and Playwright are all there."""
    if not Path(CHROMIUM).exists():
        _unavailable(f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
    if bundle_missing():
        _unavailable("the page is not built (make web)")
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        _unavailable("playwright is not installed (pip install playwright)")


class Browser:
    """One headless Chromium page and everything it said: console lines, uncaught errors, requests."""

    def __init__(self, context: Any, page: Any) -> None:
        self.context = context
        self.page = page
        self.console: list[Any] = []
        self.errors: list[str] = []
        self.requests: list[str] = []
        page.on("console", lambda message: self.console.append(message))
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        context.on("request", lambda request: self.requests.append(request.url))

    def problems(self) -> list[str]:
        """Console errors and warnings, and uncaught exceptions."""
        lines = [
            f"{m.type}: {m.text} @ {m.location.get('url')}" for m in self.console if m.type in ("error", "warning")
        ]
        return lines + [f"pageerror: {e}" for e in self.errors]

    def foreign_requests(self) -> list[str]:
        return [url for url in self.requests if not url.startswith(_LOCAL)]


B = TypeVar("B", bound=Browser)


@asynccontextmanager
async def chromium_launcher(
    browser_cls: type[B], *, timeout_ms: int, profile_prefix: str
) -> AsyncIterator[Callable[..., Awaitable[B]]]:
    """Yield ``launch(args, **options)``: a fresh headless Chromium (own profile) as ``browser_cls``.

    Every browser is closed and its profile removed on exit.
    """
    require_chromium()
    from playwright.async_api import async_playwright

    profiles: list[str] = []
    contexts: list[Any] = []
    try:
        async with async_playwright() as playwright:

            async def launch(args: list[str], **options: Any) -> B:
                profile = tempfile.mkdtemp(prefix=profile_prefix)
                profiles.append(profile)
                context = await playwright.chromium.launch_persistent_context(
                    profile, executable_path=CHROMIUM, headless=True, args=[*FLAGS, *args], **options
                )
                context.set_default_timeout(timeout_ms)
                contexts.append(context)
                page = context.pages[0] if context.pages else await context.new_page()
                return browser_cls(context, page)

            try:
                yield launch
            finally:
                for context in contexts:
                    await context.close()
    finally:
        for profile in profiles:
            shutil.rmtree(profile, ignore_errors=True)
