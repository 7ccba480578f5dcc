"""A WebSocket peer over a plain socket, for fault tests: it misbehaves on purpose.

Unlike aiohttp's client it reads nothing unless asked (no read-ahead buffer), answers no ping
unless asked, can send any frame (invalid UTF-8 in a text frame, a length header that lies,
fragments), set a small receive buffer, and leave by TCP reset (RST) or by FIN without a close
frame.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
from typing import Any

from voice_channel.channel.auth import JWT_HEADER
from voice_channel.elevenlabs.client import sign_speech_engine_jwt

__all__ = ["BINARY", "CLOSE", "PING", "PONG", "TEXT", "RawPeer", "encode_frame"]

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def _mask(payload: bytes, key: bytes) -> bytes:
    if not payload:
        return payload
    repeated = (key * (len(payload) // 4 + 1))[: len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(len(payload), "big")


def encode_frame(opcode: int, payload: bytes, *, fin: bool = True, declared_length: int | None = None) -> bytes:
    """A client frame (masked, as RFC 6455 requires); ``declared_length`` may lie about the size."""
    length = len(payload) if declared_length is None else declared_length
    first = (0x80 if fin else 0) | opcode
    if length < 126:
        header = struct.pack("!BB", first, 0x80 | length)
    elif length < 65536:
        header = struct.pack("!BBH", first, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", first, 0x80 | 127, length)
    key = os.urandom(4)
    return header + key + _mask(payload, key)


class RawPeer:
    """One TCP connection to the server, upgraded (or not) to a WebSocket by hand."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._loop = asyncio.get_running_loop()
        self._buffer = bytearray()
        self.status: int | None = None

    @classmethod
    async def open(cls, port: int, *, rcvbuf: int | None = None) -> RawPeer:
        """A TCP connection, nothing sent yet; ``rcvbuf`` shrinks the receive buffer (and window)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        return cls(sock)

    @classmethod
    async def connect(
        cls,
        port: int,
        api_key: str | None,
        *,
        path: str = "/ws",
        rcvbuf: int | None = None,
        init: bool = True,
        jwt: str | None = None,
    ) -> RawPeer:
        """Open, upgrade (signing the JWT with ``api_key`` unless ``jwt`` is given) and send ``init``."""
        peer = await cls.open(port, rcvbuf=rcvbuf)
        token = jwt if jwt is not None else (sign_speech_engine_jwt(api_key) if api_key else None)
        await peer.upgrade(path, {JWT_HEADER: token} if token else {})
        if peer.status == 101 and init:
            await peer.send_json({"type": "init", "conversation_id": f"conv_raw_{os.urandom(4).hex()}"})
        return peer

    async def upgrade(self, path: str, headers: dict[str, str]) -> int:
        """Send the upgrade request and read the response head; returns (and keeps) the status."""
        lines = [
            f"GET {path} HTTP/1.1",
            "Host: 127.0.0.1",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}",
            "Sec-WebSocket-Version: 13",
            *(f"{name}: {value}" for name, value in headers.items()),
        ]
        await self.send_raw(("\r\n".join(lines) + "\r\n\r\n").encode())
        while b"\r\n\r\n" not in self._buffer:
            if not await self._fill():
                raise ConnectionError("closed during the handshake")
        head, _, rest = bytes(self._buffer).partition(b"\r\n\r\n")
        self._buffer = bytearray(rest)
        self.status = int(head.split(b" ", 2)[1])
        if self.status != 101:
            # The body (if any) is not read: the connection is done with.
            pass
        return self.status

    # --- sending --------------------------------------------------------------------------------

    async def send_raw(self, data: bytes) -> None:
        await self._loop.sock_sendall(self.sock, data)

    async def send_frame(self, opcode: int, payload: bytes, **kwargs: Any) -> None:
        await self.send_raw(encode_frame(opcode, payload, **kwargs))

    async def send_text(self, text: str | bytes) -> None:
        await self.send_frame(TEXT, text.encode() if isinstance(text, str) else text)

    async def send_json(self, frame: dict[str, Any]) -> None:
        await self.send_text(json.dumps(frame))

    # --- receiving ------------------------------------------------------------------------------

    async def _fill(self) -> bool:
        data = await self._loop.sock_recv(self.sock, 65536)
        if not data:
            return False
        self._buffer += data
        return True

    async def _take(self, count: int) -> bytes:
        while len(self._buffer) < count:
            if not await self._fill():
                raise ConnectionError("closed")
        chunk = bytes(self._buffer[:count])
        del self._buffer[:count]
        return chunk

    async def read_frame(self) -> tuple[int, bytes]:
        """The next frame from the server: ``(opcode, payload)``. Raises ``ConnectionError`` at EOF."""
        first, second = await self._take(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await self._take(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await self._take(8))
        return first & 0x0F, await self._take(length)

    async def read_until_closed(self) -> tuple[int | None, list[tuple[int, bytes]]]:
        """Read everything until the close frame or the end; returns the close code and the frames before."""
        frames = []
        try:
            while True:
                opcode, payload = await self.read_frame()
                if opcode == CLOSE:
                    return (struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None), frames
                frames.append((opcode, payload))
        except (ConnectionError, OSError):
            return None, frames

    # --- leaving --------------------------------------------------------------------------------

    def reset(self) -> None:
        """Leave by TCP reset: no close frame, no FIN."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def close(self) -> None:
        """Leave with a FIN and no close frame."""
        self.sock.close()
