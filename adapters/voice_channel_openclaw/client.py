"""The Gateway connection: handshake, requests, events, and reconnection with backoff.

One :class:`GatewayClient` owns one WebSocket at a time and a supervisor task that keeps it up:

* connect: wait for ``connect.challenge``, send ``connect`` (protocol 4, operator role, the
  scopes and caps the voice channel needs, the shared secret, the device signature over the
  challenge), check ``hello-ok`` (protocol version, granted scopes);
* while connected: answers are matched to requests by id; events go to ``on_event``; a
  connection silent for 2.5 ticks (the Gateway ticks every 30 s) is considered dead;
* on failure or loss: retry with exponential backoff (``reconnect_initial_s`` doubling up to
  ``reconnect_max_s``), honouring ``retryAfterMs`` (a starting Gateway answers ``UNAVAILABLE``
  and closes with 1013). Errors that need an operator (a wrong token, a rejected device) are
  logged once per distinct error with their fix, and retried at the slowest pace.

``aclose()`` stops the supervisor and fails pending requests; nothing outlives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import aiohttp
import structlog

from voice_channel_openclaw.identity import DeviceIdentity
from voice_channel_openclaw.protocol import (
    CAPS,
    CLIENT_ID,
    CLIENT_MODE,
    PROTOCOL_VERSION,
    ROLE,
    SCOPES,
    GatewayError,
    GatewayUnavailable,
)

__all__ = ["GatewayClient"]

log = structlog.get_logger("voice_channel_openclaw.client")

EventHandler = Callable[[str, dict[str, Any]], None]
StateHandler = Callable[[bool], None]

#: The Gateway allows 25 MiB frames (hello-ok policy.maxPayload); aiohttp's default is 4 MiB.
MAX_FRAME = 32 * 1024 * 1024
DEFAULT_TICK_S = 30.0


class GatewayClient:
    """A self-healing operator connection to one Gateway."""

    def __init__(
        self,
        url: str,
        *,
        identity: DeviceIdentity | None,
        token: str | None = None,
        password: str | None = None,
        display_name: str = "voice-channel",
        version: str = "0",
        connect_timeout_s: float = 10.0,
        request_timeout_s: float = 15.0,
        reconnect_initial_s: float = 0.5,
        reconnect_max_s: float = 30.0,
        on_event: EventHandler | None = None,
        on_state: StateHandler | None = None,
        platform: str = "linux",
    ) -> None:
        self.url = url
        self.identity = identity
        self._token = token
        self._password = password
        self.display_name = display_name
        self.version = version
        self.connect_timeout_s = connect_timeout_s
        self.request_timeout_s = request_timeout_s
        self.reconnect_initial_s = reconnect_initial_s
        self.reconnect_max_s = reconnect_max_s
        self._on_event = on_event or (lambda event, payload: None)
        self._on_state = on_state or (lambda connected: None)
        self.platform = platform
        self.instance_id = uuid.uuid4().hex[:12]
        #: The last ``hello-ok`` payload; ``None`` until the first connect.
        self.hello: dict[str, Any] | None = None
        #: Why the last connect failed or the connection was lost (``None`` while connected).
        self.last_error: BaseException | None = None
        #: Incremented on every successful connect.
        self.connections = 0
        self._ids = itertools.count(1)
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._connected = asyncio.Event()
        self._closing = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._reported: str | None = None

    # --- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start connecting in the background (a Gateway that is down is retried, not fatal)."""
        if self._supervisor is None:
            self._http = aiohttp.ClientSession()
            self._supervisor = asyncio.get_running_loop().create_task(self._supervise(), name="openclaw-gateway")

    async def aclose(self) -> None:
        self._closing.set()
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
        if self._ws is not None and not self._ws.closed:
            await self._ws.close()
        self._fail_pending(GatewayUnavailable("client closed"))
        if self._http is not None:
            await self._http.close()
            self._http = None

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def has_method(self, method: str) -> bool:
        methods = ((self.hello or {}).get("features") or {}).get("methods") or []
        return method in methods

    async def wait_connected(self, timeout: float) -> None:
        """Return once connected; raise :class:`GatewayUnavailable` (with the last error) after ``timeout``."""
        if self._connected.is_set():
            return
        try:
            async with asyncio.timeout(timeout):
                await self._connected.wait()
        except TimeoutError:
            raise GatewayUnavailable(str(self.last_error or "not connected yet")) from None

    # --- requests --------------------------------------------------------------------------------

    async def request(self, method: str, params: dict[str, Any], *, timeout: float | None = None) -> Any:
        """Send a request and return its payload; raise :class:`GatewayError` for an error answer."""
        ws = self._ws
        if ws is None or ws.closed or not self._connected.is_set():
            raise GatewayUnavailable(f"not connected to the Gateway ({self.last_error or 'connecting'})")
        request_id = f"vc-{next(self._ids)}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            await ws.send_str(json.dumps({"type": "req", "id": request_id, "method": method, "params": params}))
            async with asyncio.timeout(timeout or self.request_timeout_s):
                frame = await future
        except TimeoutError:
            raise GatewayUnavailable(f"{method}: no answer within {timeout or self.request_timeout_s}s") from None
        except (ConnectionError, aiohttp.ClientError) as exc:
            raise GatewayUnavailable(f"{method}: connection lost ({exc})") from None
        finally:
            self._pending.pop(request_id, None)
        if not frame.get("ok"):
            raise GatewayError(frame.get("error"), method=method)
        return frame.get("payload")

    # --- the connection ----------------------------------------------------------------------------

    async def _supervise(self) -> None:
        delay = self.reconnect_initial_s
        while not self._closing.is_set():
            wait = delay
            try:
                ws = await self._connect()
            except GatewayError as exc:
                self.last_error = exc
                self._report(exc)
                if exc.transient:
                    wait = max(delay, exc.retry_after_s or 0.0)
                else:
                    wait = self.reconnect_max_s
            except (OSError, aiohttp.ClientError, TimeoutError) as exc:
                self.last_error = exc
                self._report(exc)
            else:
                delay = self.reconnect_initial_s
                await self._serve(ws)
                wait = self.reconnect_initial_s if not self._closing.is_set() else 0
            if self._closing.is_set():
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._closing.wait()
            delay = min(delay * 2, self.reconnect_max_s)

    def _report(self, exc: BaseException) -> None:
        """Log a connect failure once per distinct error (repeats at debug level), with its fix."""
        if isinstance(exc, GatewayError):
            key = f"{exc.code}/{exc.detail_code}"
            fields: dict[str, Any] = {"code": exc.code, "detail": exc.detail_code, "message": exc.message}
            fields["fix"] = exc.hint
            serious = not exc.transient
        else:
            key = type(exc).__name__
            fields = {"error": f"{type(exc).__name__}: {exc}".strip()}
            serious = False
        if key == self._reported:
            log.debug("openclaw_connect_retry", url=self.url, **fields)
        elif serious:
            log.error("openclaw_connect_failed", url=self.url, **fields)
        else:
            log.info("openclaw_connect_retry", url=self.url, **fields)
        self._reported = key

    async def _connect(self) -> aiohttp.ClientWebSocketResponse:
        assert self._http is not None
        async with asyncio.timeout(self.connect_timeout_s):
            ws = await self._http.ws_connect(
                self.url,
                max_msg_size=MAX_FRAME,
                heartbeat=None,  # the Gateway ticks; silence is detected in _read
                autoping=True,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5.0),
            )
            try:
                self._check_hello(await self._handshake(ws))
            except BaseException:
                await ws.close()
                raise
        return ws

    async def _handshake(self, ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
        challenge = await self._next_frame(ws)
        if challenge.get("type") != "event" or challenge.get("event") != "connect.challenge":
            raise GatewayError({"code": "PROTOCOL_MISMATCH", "message": "no connect.challenge from the Gateway"})
        payload = challenge.get("payload") or {}
        nonce, signed_at = str(payload.get("nonce") or ""), int(payload.get("ts") or time.time() * 1000)
        auth: dict[str, str] = {}
        if self._token:
            auth["token"] = self._token
        if self._password:
            auth["password"] = self._password
        params: dict[str, Any] = {
            "minProtocol": PROTOCOL_VERSION,
            "maxProtocol": PROTOCOL_VERSION,
            "client": {
                "id": CLIENT_ID,
                "displayName": self.display_name,
                "version": self.version,
                "platform": self.platform,
                "mode": CLIENT_MODE,
                "instanceId": self.instance_id,
            },
            "role": ROLE,
            "scopes": list(SCOPES),
            "caps": list(CAPS),
            "auth": auth,
            "locale": "en-US",
            "userAgent": f"voice-channel/{self.version}",
        }
        if self.identity is not None:
            params["device"] = self.identity.connect_device(
                client_id=CLIENT_ID,
                client_mode=CLIENT_MODE,
                role=ROLE,
                scopes=SCOPES,
                token=self._token or "",
                nonce=nonce,
                signed_at_ms=signed_at,
                platform=self.platform,
            )
        await ws.send_str(json.dumps({"type": "req", "id": "connect", "method": "connect", "params": params}))
        while True:
            frame = await self._next_frame(ws)
            if frame.get("type") == "res" and frame.get("id") == "connect":
                break
        if not frame.get("ok"):
            error = GatewayError(frame.get("error"), method="connect")
            with contextlib.suppress(TimeoutError, aiohttp.ClientError):
                async with asyncio.timeout(2):
                    message = await ws.receive()  # the Gateway closes after a refused connect
                    error.close_code = message.data if message.type == aiohttp.WSMsgType.CLOSE else None
            raise error
        return frame.get("payload") or {}

    @staticmethod
    async def _next_frame(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
        while True:
            message = await ws.receive()
            if message.type == aiohttp.WSMsgType.TEXT:
                try:
                    frame = json.loads(message.data)
                except ValueError:
                    continue
                if isinstance(frame, dict):
                    return frame
                continue
            if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                reason = message.extra or ""
                raise ConnectionResetError(f"the Gateway closed the connection ({message.data} {reason})".strip())
            if message.type == aiohttp.WSMsgType.ERROR:
                raise ConnectionResetError(f"WebSocket error: {ws.exception()}")

    def _check_hello(self, hello: dict[str, Any]) -> None:
        if hello.get("type") != "hello-ok":
            raise GatewayError(
                {"code": "PROTOCOL_MISMATCH", "message": f"unexpected connect answer {hello.get('type')!r}"}
            )
        protocol = hello.get("protocol")
        if protocol != PROTOCOL_VERSION:
            raise GatewayError(
                {
                    "code": "INVALID_REQUEST",
                    "message": f"the Gateway speaks protocol {protocol}, this client {PROTOCOL_VERSION}",
                    "details": {"code": "PROTOCOL_MISMATCH"},
                }
            )
        granted = set(((hello.get("auth") or {}).get("scopes")) or [])
        missing = [scope for scope in SCOPES if scope not in granted and "operator.admin" not in granted]
        if missing:
            # Chat may still work; approvals will not. Say so once, clearly.
            log.warning(
                "openclaw_scopes_missing",
                missing=missing,
                fix="the token or device approval must grant operator.read, operator.write and operator.approvals",
            )
        self.hello = hello

    async def _serve(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Run one established connection until it ends."""
        self._ws = ws
        self.connections += 1
        self.last_error = None
        self._reported = None
        server = (self.hello or {}).get("server") or {}
        policy = (self.hello or {}).get("policy") or {}
        tick_s = float(policy.get("tickIntervalMs") or DEFAULT_TICK_S * 1000) / 1000
        log.info(
            "openclaw_connected",
            url=self.url,
            server_version=server.get("version"),
            protocol=(self.hello or {}).get("protocol"),
            device_id=self.identity.device_id[:16] if self.identity else None,
            reconnect=self.connections > 1,
        )
        self._connected.set()
        self._notify_state(True)
        try:
            await self._read(ws, silence_s=tick_s * 2.5)
        finally:
            self._connected.clear()
            self._ws = None
            if not ws.closed:
                with contextlib.suppress(Exception):
                    await ws.close()
            lost = GatewayUnavailable(f"connection to the Gateway lost (close code {ws.close_code})")
            self.last_error = lost
            self._fail_pending(lost)
            if not self._closing.is_set():
                log.warning("openclaw_disconnected", url=self.url, close_code=ws.close_code)
                self._notify_state(False)

    async def _read(self, ws: aiohttp.ClientWebSocketResponse, *, silence_s: float) -> None:
        while True:
            try:
                message = await ws.receive(timeout=silence_s)
            except TimeoutError:
                log.warning("openclaw_connection_silent", seconds=silence_s)
                return
            if message.type != aiohttp.WSMsgType.TEXT:
                if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                    return
                if message.type == aiohttp.WSMsgType.ERROR:
                    return
                continue
            try:
                frame = json.loads(message.data)
            except ValueError:
                log.warning("openclaw_bad_frame", length=len(message.data))
                continue
            if not isinstance(frame, dict):
                continue
            kind = frame.get("type")
            if kind == "res":
                future = self._pending.get(str(frame.get("id")))
                if future is not None and not future.done():
                    future.set_result(frame)
            elif kind == "event":
                event = frame.get("event")
                payload = frame.get("payload")
                if event == "shutdown":
                    log.info("openclaw_gateway_shutdown", reason=(payload or {}).get("reason"))
                if isinstance(event, str) and isinstance(payload, dict):
                    try:
                        self._on_event(event, payload)
                    except Exception:
                        log.exception("openclaw_event_handler_failed", gateway_event=event)

    def _notify_state(self, connected: bool) -> None:
        try:
            self._on_state(connected)
        except Exception:
            log.exception("openclaw_state_handler_failed")

    def _fail_pending(self, error: BaseException) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)
        self._pending.clear()
