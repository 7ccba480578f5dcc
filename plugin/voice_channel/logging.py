"""structlog configuration: console on a terminal, JSON lines otherwise; secrets never logged.

Configure once, at start-up, before anything logs. Modules use ``structlog.get_logger()``;
conversations and turns bind ``conversation_id`` and ``event_id`` (as bound loggers, and as
context variables so that runtime adapters' own log lines carry them too).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import structlog
from pydantic_core import to_json

__all__ = ["SecretRedactor", "configure_logging"]

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
_SENSITIVE_KEY = re.compile(r"api_key|apikey|secret|token|password|authorization", re.IGNORECASE)
REDACTED = "[redacted]"


def _to_json(event: Any, **_: Any) -> str:
    # pydantic-core's serializer (Rust) is several times faster than the json module, and it
    # turns anything it does not know into a string instead of failing.
    return to_json(event, fallback=repr).decode()


class SecretRedactor:
    """Processor: masks configured secret values anywhere in string fields, and sensitive keys.

    Defence in depth: the code never logs secrets on purpose; this catches the accidental case
    (an exception message quoting a header, a URL with a key in it).
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def __call__(self, logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        for key, value in event.items():
            if isinstance(value, str):
                if _SENSITIVE_KEY.search(key) and key != "event":
                    event[key] = REDACTED
                    continue
                for secret in self._secrets:
                    if secret in value:
                        value = value.replace(secret, REDACTED)
                event[key] = value
        return event


def configure_logging(
    level: str = "info",
    fmt: str = "auto",
    *,
    stream: TextIO | None = None,
    secrets: Iterable[str] = (),
    cache: bool = True,
) -> None:
    """Configure structlog (and the stdlib root logger for third-party warnings).

    :param level: ``debug``, ``info``, ``warning`` or ``error``.
    :param fmt: ``console``, ``json``, or ``auto`` (console when ``stream`` is a terminal).
    :param stream: where to write; standard error by default (standard output belongs to
        ``talk``'s conversation).
    :param secrets: values to mask wherever they appear (the API key, shared secrets).
    :param cache: cache loggers on first use (production); tests pass ``False``.
    """
    stream = stream or sys.stderr
    use_console = fmt == "console" or (fmt == "auto" and stream.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=stream.isatty())
        if use_console
        else structlog.processors.JSONRenderer(serializer=_to_json)
    )
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        SecretRedactor(secrets),
        structlog.processors.StackInfoRenderer(),
    ]
    if not use_console:
        processors.append(structlog.processors.dict_tracebacks)
    processors.append(renderer)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=cache,
    )
    logging.basicConfig(
        level=max(logging.WARNING, _LEVELS[level]),
        stream=stream,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
