"""Gateway wire protocol v4: constants, frames and errors (verified against openclaw 2026.9.6).

Frames are JSON text messages: requests ``{"type": "req", "id", "method", "params"}``, responses
``{"type": "res", "id", "ok", "payload" | "error"}`` and events ``{"type": "event", "event",
"payload", "seq"?}``. An error is ``{"code", "message", "details"?, "retryable"?, "retryAfterMs"?}``;
``details.code`` refines it (``AUTH_TOKEN_MISMATCH``, ``MISSING_SCOPE``...). Every documented code
has a hint here that tells the operator what to do (see :func:`hint_for`).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CAPS",
    "CLIENT_ID",
    "CLIENT_MODE",
    "PROTOCOL_VERSION",
    "ROLE",
    "SCOPES",
    "GatewayError",
    "GatewayUnavailable",
    "hint_for",
]

PROTOCOL_VERSION = 4
ROLE = "operator"
#: read: events and history; write: chat.send/abort; approvals: the runs we start may ask for
#: exec approval (without it the Gateway refuses to register the approval and the exec fails).
SCOPES = ("operator.read", "operator.write", "operator.approvals")
#: Approval events reach only connections of the same device that hold one of these caps.
CAPS = ("tool-events", "exec-approvals", "approvals")
#: ``client.id`` is a closed enum on the Gateway; a backend integration is ``gateway-client``.
CLIENT_ID = "gateway-client"
CLIENT_MODE = "backend"

# --- hints for every documented failure --------------------------------------------------------

_TOKEN = "set openclaw.token (or OPENCLAW_GATEWAY_TOKEN) to the Gateway's gateway.auth.token"
_PASSWORD = "set openclaw.password (or OPENCLAW_GATEWAY_PASSWORD) to the Gateway's gateway.auth.password"
_DEVICE_KEY = "the device signature was rejected; check the clock, or move the openclaw.device_key_path file away"
_PAIR = "approve this device on the Gateway host: `openclaw devices list`, then `openclaw devices approve <requestId>`"

HINTS: dict[str, str] = {
    # error.code (ErrorCodes)
    "NOT_LINKED": "the Gateway reports the device is not linked; pair it again: " + _PAIR,
    "NOT_PAIRED": "this device is not paired: " + _PAIR,
    "AGENT_TIMEOUT": "the agent timed out",
    "INVALID_REQUEST": "the Gateway rejected the request (see message)",
    "FORBIDDEN": "the connection lacks a permission (see message)",
    "APPROVAL_NOT_FOUND": "the approval no longer exists (expired or decided elsewhere)",
    "UNAVAILABLE": "the Gateway is starting or overloaded; retrying",
    # error.details.code (ConnectErrorDetailCodes, GatewayErrorDetailCodes)
    "AUTH_REQUIRED": "the Gateway needs credentials: " + _TOKEN,
    "AUTH_UNAUTHORIZED": "the Gateway refused the credentials: " + _TOKEN,
    "AUTH_TOKEN_MISSING": "no token was sent: " + _TOKEN,
    "AUTH_TOKEN_MISMATCH": "wrong Gateway token: " + _TOKEN,
    "AUTH_TOKEN_NOT_CONFIGURED": "the Gateway uses token auth but has no token configured: set gateway.auth.token",
    "AUTH_PASSWORD_MISSING": "the Gateway uses password auth: " + _PASSWORD,
    "AUTH_PASSWORD_MISMATCH": "wrong Gateway password: " + _PASSWORD,
    "AUTH_PASSWORD_NOT_CONFIGURED": "the Gateway uses password auth but has none configured: set gateway.auth.password",
    "AUTH_BOOTSTRAP_TOKEN_INVALID": "the bootstrap token is invalid or used up: " + _TOKEN,
    "AUTH_DEVICE_TOKEN_MISMATCH": "the Gateway's device token for this device changed: " + _TOKEN,
    "AUTH_SCOPE_MISMATCH": "the device is approved for other scopes; re-approve it with operator.read, "
    "operator.write and operator.approvals: " + _PAIR,
    "AUTH_RATE_LIMITED": "too many failed connects; waiting before retrying",
    "AUTH_TAILSCALE_IDENTITY_MISSING": "Tailscale auth: no Tailscale identity on the request; connect with a token",
    "AUTH_TAILSCALE_PROXY_MISSING": "Tailscale auth: not reached through Tailscale Serve; connect with a token",
    "AUTH_TAILSCALE_WHOIS_FAILED": "Tailscale auth: identity lookup failed; connect with a token",
    "AUTH_TAILSCALE_IDENTITY_MISMATCH": "Tailscale auth: identity mismatch; connect with a token",
    "AUTH_IDENTITY_HEADER_REQUIRED": "trusted-proxy auth: the identity header is missing; connect with a token",
    "AUTH_VERIFIED_USER_REQUIRED": "the Gateway requires a verified user; connect with a token",
    "AUTHENTICATED_PROFILE_UNAVAILABLE": "the Gateway's user profile is unavailable; check the Gateway",
    "CONTROL_UI_BUILD_MISMATCH": "control-UI build mismatch (not expected for this client); update voice-channel",
    "CONTROL_UI_ORIGIN_NOT_ALLOWED": "the connection carried a browser Origin the Gateway does not allow",
    "PROTOCOL_MISMATCH": "this voice-channel speaks Gateway protocol 4; use a Gateway that supports it "
    "(openclaw 2026.9.x) or a matching voice-channel",
    "CONTROL_UI_DEVICE_IDENTITY_REQUIRED": "the Gateway requires a device identity",
    "DEVICE_IDENTITY_REQUIRED": "the Gateway requires a device identity",
    "DEVICE_AUTH_INVALID": _DEVICE_KEY,
    "DEVICE_AUTH_DEVICE_ID_MISMATCH": _DEVICE_KEY,
    "DEVICE_AUTH_SIGNATURE_EXPIRED": "the signature's time is outside the Gateway's allowed skew: sync the clocks",
    "DEVICE_AUTH_NONCE_REQUIRED": _DEVICE_KEY,
    "DEVICE_AUTH_NONCE_MISMATCH": _DEVICE_KEY,
    "DEVICE_AUTH_SIGNATURE_INVALID": _DEVICE_KEY,
    "DEVICE_AUTH_PUBLIC_KEY_INVALID": _DEVICE_KEY,
    "PAIRING_REQUIRED": "this device waits for approval: " + _PAIR,
    "CLIENT_VERSION_MISMATCH": "the Gateway does not accept this client version; update voice-channel",
    "MISSING_SCOPE": "the connection lacks a scope; the token or device approval must grant operator.read, "
    "operator.write and operator.approvals",
    "UNKNOWN_AGENT_ID": "no such agent: set openclaw.agent_id to one of `openclaw agents list`",
    "APPROVAL_ALREADY_RESOLVED": "the approval was already decided elsewhere",
}

#: Failures that go away by themselves: keep reconnecting at the normal pace.
_TRANSIENT = frozenset({"UNAVAILABLE", "AUTH_RATE_LIMITED", "PAIRING_REQUIRED", "NOT_PAIRED"})


def hint_for(code: str | None, detail_code: str | None = None) -> str:
    """What the operator should do about an error (the most specific code wins)."""
    for key in (detail_code, code):
        if key and key in HINTS:
            return HINTS[key]
    return "unexpected Gateway error; see the message"


class GatewayError(Exception):
    """An error answer from the Gateway (or a connect that failed in a protocol-defined way)."""

    def __init__(self, error: dict[str, Any] | None, *, method: str | None = None, close_code: int | None = None):
        error = error if isinstance(error, dict) else {}
        self.code: str | None = error.get("code")
        self.message: str = str(error.get("message") or "")
        details = error.get("details")
        self.details: dict[str, Any] = details if isinstance(details, dict) else {}
        self.detail_code: str | None = self.details.get("code") or self.details.get("reason")
        self.retryable = bool(error.get("retryable"))
        retry_after = error.get("retryAfterMs")
        self.retry_after_s: float | None = retry_after / 1000 if isinstance(retry_after, (int, float)) else None
        self.method = method
        self.close_code = close_code
        super().__init__(
            f"{method + ': ' if method else ''}{self.code} {self.detail_code or ''} {self.message}".strip()
        )

    @property
    def hint(self) -> str:
        return hint_for(self.code, self.detail_code)

    @property
    def transient(self) -> bool:
        """Worth retrying soon (the Gateway is starting, rate limiting, or pairing is pending)."""
        next_step = self.details.get("recommendedNextStep")
        return (
            self.retryable
            or self.code in _TRANSIENT
            or self.detail_code in _TRANSIENT
            or next_step == "wait_then_retry"
        )

    @property
    def already_resolved(self) -> bool:
        return self.detail_code == "APPROVAL_ALREADY_RESOLVED" or self.code == "APPROVAL_NOT_FOUND"


class GatewayUnavailable(Exception):
    """No usable connection to the Gateway right now (connecting, reconnecting, or failing)."""
