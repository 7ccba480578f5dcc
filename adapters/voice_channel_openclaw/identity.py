"""The client's Ed25519 device identity, as the Gateway verifies it at ``connect``.

Why a device identity at all: on loopback the shared token alone is accepted, but the Gateway
delivers exec approvals only to connections of the *device* that started the run, and only a
device can abort its own runs from a new connection. So the voice channel is one stable device.

* ``device.id`` = hex SHA-256 of the raw 32-byte public key;
* ``publicKey`` / ``signature`` = unpadded base64url of the raw key / of the Ed25519 signature;
* the signed text (payload v3) is
  ``v3|<deviceId>|<clientId>|<clientMode>|<role>|<scopes,>|<signedAtMs>|<token>|<nonce>|<platform>|<deviceFamily>``
  with ``signedAt`` and ``nonce`` taken from the Gateway's ``connect.challenge``.

The key is kept in a JSON file created with mode 0600 (never logged).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

__all__ = ["DeviceIdentity", "IdentityError", "b64url", "payload_v3"]


class IdentityError(Exception):
    """The device key file cannot be used; the message names the file and the fix."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def payload_v3(
    *,
    device_id: str,
    client_id: str,
    client_mode: str,
    role: str,
    scopes: list[str] | tuple[str, ...],
    signed_at_ms: int,
    token: str,
    nonce: str,
    platform: str,
    device_family: str = "",
) -> str:
    """The exact text the Gateway verifies (``buildDeviceAuthPayloadV3``)."""
    return "|".join(
        [
            "v3",
            device_id,
            client_id,
            client_mode,
            role,
            ",".join(scopes),
            str(signed_at_ms),
            token,
            nonce,
            platform.lower(),
            device_family.lower(),
        ]
    )


class DeviceIdentity:
    """An Ed25519 key pair and the ids derived from it."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        raw = private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.device_id = hashlib.sha256(raw).hexdigest()
        self.public_key = b64url(raw)

    @classmethod
    def generate(cls) -> DeviceIdentity:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def load_or_create(cls, path: Path) -> DeviceIdentity:
        """Load the key from ``path``, or create it there (directories too, file mode 0600)."""
        path = path.expanduser()
        if path.exists():
            return cls._load(path)
        identity = cls.generate()
        if not identity._save(path):
            return cls._load(path)  # another process created it first: use theirs
        return identity

    @classmethod
    def _load(cls, path: Path) -> DeviceIdentity:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            raw = _b64url_decode(data["privateKey"])
            key = Ed25519PrivateKey.from_private_bytes(raw)
        except OSError as exc:
            raise IdentityError(f"cannot read the OpenClaw device key {path}: {exc.strerror or exc}") from None
        except (ValueError, KeyError, TypeError):
            raise IdentityError(
                f"the OpenClaw device key {path} is not a valid key file: move it away and a new one is created"
                " (the Gateway then sees a new device)"
            ) from None
        identity = cls(key)
        if data.get("deviceId") not in (None, identity.device_id):
            raise IdentityError(f"the OpenClaw device key {path} does not match its deviceId: move it away")
        return identity

    def _save(self, path: Path) -> bool:
        raw = self._key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        body = json.dumps(
            {"version": 1, "deviceId": self.device_id, "publicKey": self.public_key, "privateKey": b64url(raw)}
        )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Created 0600 from the start (no window where another user could read it), exclusively.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(body)
        except FileExistsError:
            return False
        except OSError as exc:
            raise IdentityError(f"cannot create the OpenClaw device key {path}: {exc.strerror or exc}") from None
        return True

    def sign(self, payload: str) -> str:
        return b64url(self._key.sign(payload.encode("utf-8")))

    def connect_device(
        self,
        *,
        client_id: str,
        client_mode: str,
        role: str,
        scopes: list[str] | tuple[str, ...],
        token: str,
        nonce: str,
        signed_at_ms: int,
        platform: str,
    ) -> dict[str, Any]:
        """The ``device`` object of ``connect`` params, signed for this challenge."""
        payload = payload_v3(
            device_id=self.device_id,
            client_id=client_id,
            client_mode=client_mode,
            role=role,
            scopes=scopes,
            signed_at_ms=signed_at_ms,
            token=token,
            nonce=nonce,
            platform=platform,
        )
        return {
            "id": self.device_id,
            "publicKey": self.public_key,
            "signature": self.sign(payload),
            "signedAt": signed_at_ms,
            "nonce": nonce,
        }
