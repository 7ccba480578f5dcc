"""Speech Engine resources at ElevenLabs: what ``voice-channel engine`` sends and how it shows the answer.

The SDK (2.78) covers most of an engine's body, with two gaps filled through
``request_options.additional_body_parameters`` (merged into the JSON body): ``cascade_timeout_seconds`` (no
argument anywhere) and ``overrides`` on update (``update()`` has no such argument).

An update that touches the WebSocket settings (``ws_url``, request headers) reads the engine first and sends the
whole ``speech_engine`` object, so that changing one never drops the other, whatever the API's merge rules.
Other sections are sent as partial objects (PATCH).
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voice_channel.elevenlabs.api import check_engine_id, request_options
from voice_channel.settings import Settings

if TYPE_CHECKING:
    from elevenlabs import AsyncElevenLabs

__all__ = [
    "ENV_NAME",
    "EngineChanges",
    "create_engine",
    "describe_engine",
    "engine_as_json",
    "header_value",
    "turn_settings",
    "update_engine",
    "write_env_file",
]

ENV_NAME = "ELEVENLABS_SPEECH_ENGINE_ID"
REDACTED = "[redacted]"
#: Sections of the body that are objects; a change to any of their keys is sent as a partial object.
SECTIONS = ("asr", "tts", "turn", "conversation", "privacy")


@dataclass
class EngineChanges:
    """What to set on an engine; ``None`` (or empty) means "leave as it is" (or the API default on create)."""

    name: str | None = None
    ws_url: str | None = None
    #: Request headers to add or replace: a literal (the shared secret, the conversation language) or a
    #: dynamic-variable locator ``{"variable_name": ...}``; ``remove_headers`` to drop.
    headers: dict[str, str | dict[str, str]] = field(default_factory=dict)
    remove_headers: list[str] = field(default_factory=list)
    #: Partial section objects, e.g. ``{"tts": {"voice_id": "..."}}``.
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    language: str | None = None
    tags: list[str] | None = None
    allow_first_message: bool | None = None
    cascade_timeout_s: float | None = None

    def set(self, section: str, key: str, value: Any) -> None:
        """Set ``section.key`` unless ``value`` is ``None``."""
        if value is not None:
            self.sections.setdefault(section, {})[key] = value

    @property
    def touches_websocket(self) -> bool:
        return self.ws_url is not None or bool(self.headers) or bool(self.remove_headers)

    def is_empty(self) -> bool:
        return not (
            self.name is not None
            or self.touches_websocket
            or self.sections
            or self.language is not None
            or self.tags is not None
            or self.allow_first_message is not None
            or self.cascade_timeout_s is not None
        )


def _common_arguments(changes: EngineChanges) -> dict[str, Any]:
    arguments: dict[str, Any] = {k: dict(v) for k, v in changes.sections.items() if v}
    if changes.name is not None:
        arguments["name"] = changes.name
    if changes.language is not None:
        arguments["language"] = changes.language
    if changes.tags is not None:
        arguments["tags"] = list(changes.tags)
    return arguments


def _extra_body(changes: EngineChanges, *, overrides: bool) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if changes.cascade_timeout_s is not None:
        extra["cascade_timeout_seconds"] = changes.cascade_timeout_s
    if overrides and changes.allow_first_message is not None:
        extra["overrides"] = {"first_message": changes.allow_first_message}
    return extra


async def create_engine(client: AsyncElevenLabs, settings: Settings, changes: EngineChanges) -> Any:
    """Create an engine; returns the SDK's ``SpeechEngineResource`` (``.engine_id``, ``.config``)."""
    if changes.ws_url is None:
        raise ValueError("a new engine needs its ws_url")
    headers = {k: v for k, v in changes.headers.items() if k not in changes.remove_headers}
    speech_engine: dict[str, Any] = {"ws_url": changes.ws_url}
    if headers:
        speech_engine["request_headers"] = headers
    arguments = _common_arguments(changes)
    if changes.allow_first_message is not None:
        arguments["overrides"] = {"first_message": changes.allow_first_message}
    extra = _extra_body(changes, overrides=False)
    options = request_options(settings, **({"additional_body_parameters": extra} if extra else {}))
    return await client.speech_engine.create(speech_engine=speech_engine, request_options=options, **arguments)


async def update_engine(client: AsyncElevenLabs, settings: Settings, engine_id: str, changes: EngineChanges) -> Any:
    """Update an engine with only what ``changes`` names; returns the SDK's ``SpeechEngineResource``."""
    check_engine_id(engine_id)
    arguments = _common_arguments(changes)
    if changes.touches_websocket:
        current = await client.speech_engine.get(engine_id, request_options=request_options(settings))
        engine_config = current.config.speech_engine
        headers = dict(getattr(engine_config, "request_headers", None) or {})
        headers = {k: header_value(v) for k, v in headers.items() if k not in changes.remove_headers}
        headers.update(changes.headers)
        arguments["speech_engine"] = {
            "ws_url": changes.ws_url or engine_config.ws_url,
            "request_headers": headers,
        }
    extra = _extra_body(changes, overrides=True)
    options = request_options(settings, **({"additional_body_parameters": extra} if extra else {}))
    return await client.speech_engine.update(engine_id, request_options=options, **arguments)


def header_value(value: Any) -> Any:
    """A request header value as JSON: a literal string, or a secret/dynamic-variable locator object."""
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json", exclude_none=True)
    return value


def engine_as_json(config: Any) -> dict[str, Any]:
    """The engine's configuration as JSON, literal request header values redacted (they are usually secrets)."""
    data: dict[str, Any] = config.model_dump(mode="json", exclude_none=True)
    headers = data.get("speech_engine", {}).get("request_headers")
    if isinstance(headers, dict):
        data["speech_engine"]["request_headers"] = {
            name: REDACTED if isinstance(value, str) else value for name, value in headers.items()
        }
    return data


def describe_engine(config: Any) -> list[tuple[str, str]]:
    """Readable ``(label, value)`` lines for the terminal."""
    data = engine_as_json(config)
    speech_engine = data.get("speech_engine", {})
    headers = speech_engine.get("request_headers") or {}
    tts, asr = data.get("tts", {}), data.get("asr", {})
    privacy, overrides = data.get("privacy", {}), data.get("overrides", {})

    def header(name: str, value: Any) -> str:
        if isinstance(value, dict) and "secret_id" in value:
            return f"{name}: workspace secret {value['secret_id']}"
        if isinstance(value, dict) and "variable_name" in value:
            return f"{name}: dynamic variable {value['variable_name']}"
        return f"{name}: {value}"

    tts_parts = [tts.get("model_id"), tts.get("voice_id") and f"voice {tts['voice_id']}"]
    if tts.get("speed") is not None:
        tts_parts.append(f"speed {tts['speed']}")
    turn_parts = [f"{label} {value}" for label, value in turn_settings(config)]
    privacy_parts = [
        {True: "records voice", False: "does not record voice"}.get(privacy.get("record_voice")),
        privacy.get("retention_days") is not None and f"retention {privacy['retention_days']} days",
    ]
    cascade = data.get("cascade_timeout_seconds")
    return [
        ("id", data.get("speech_engine_id", "")),
        ("name", data.get("name", "")),
        ("ws_url", speech_engine.get("ws_url", "")),
        ("request headers", "; ".join(header(k, v) for k, v in sorted(headers.items())) or "none"),
        ("tts", ", ".join(str(p) for p in tts_parts if p) or "default"),
        ("asr", ", ".join(str(p) for p in (asr.get("provider"), asr.get("quality")) if p) or "default"),
        ("turn", "; ".join(turn_parts) or "default"),
        ("cascade timeout", f"{cascade} s" if cascade is not None else "default"),
        ("first message", "override allowed" if overrides.get("first_message") else "override not allowed"),
        ("privacy", ", ".join(str(p) for p in privacy_parts if p) or "default"),
        ("language", data.get("language") or "default"),
        ("tags", ", ".join(data.get("tags") or []) or "none"),
    ]


#: The engine's ``turn`` settings ``engine get`` and ``doctor`` show, with their labels, in this order.
TURN_LABELS = {
    "turn_timeout": "turn timeout",
    "initial_wait_time": "initial wait",
    "silence_end_call_timeout": "silence end-call timeout",
    "turn_eagerness": "eagerness",
    "spelling_patience": "spelling patience",
    "speculative_turn": "speculative turn",
    "retranscribe_on_turn_timeout": "retranscribe on turn timeout",
    "turn_model": "turn model",
    "interruption_ignore_terms": "interruption ignore terms",
    "interruption_ignore_term_languages": "ignore-term languages",
    "merge_with_default_ignore_terms": "merge default ignore terms",
}
_SECONDS = {"turn_timeout", "initial_wait_time", "silence_end_call_timeout"}


def turn_settings(config: Any) -> list[tuple[str, str]]:
    """The engine's turn settings that are set, as readable ``(label, value)`` pairs."""
    turn = engine_as_json(config).get("turn", {})
    shown = []
    for key, label in TURN_LABELS.items():
        value = turn.get(key)
        if value is None:
            continue
        if isinstance(value, bool):
            text = "on" if value else "off"
        elif isinstance(value, list):
            text = ", ".join(repr(str(v)) for v in value) if value else "none"
        elif key == "silence_end_call_timeout" and value == -1:
            text = "off"
        elif key in _SECONDS:
            text = f"{value} s"
        else:
            text = str(value)
        shown.append((label, text))
    return shown


_ENV_LINE = re.compile(rf"^\s*(export\s+)?{ENV_NAME}\s*=")


def write_env_file(path: Path, engine_id: str) -> bool:
    """Set ``ELEVENLABS_SPEECH_ENGINE_ID=<id>`` in an env file, keeping every other line.

    Replaces an existing assignment in place, else appends one. A new file is created readable by its owner
    only (env files tend to collect secrets); an existing one keeps its permissions. Returns whether an
    existing assignment was replaced.
    """
    check_engine_id(engine_id)
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    replaced = False
    for index, line in enumerate(lines):
        if _ENV_LINE.match(line):
            prefix = "export " if line.lstrip().startswith("export") else ""
            lines[index] = f"{prefix}{ENV_NAME}={engine_id}"
            replaced = True
    if not replaced:
        lines.append(f"{ENV_NAME}={engine_id}")
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o600
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return replaced
