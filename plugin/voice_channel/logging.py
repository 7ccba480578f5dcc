"""structlog configuration: console on a terminal, JSON lines otherwise; secrets never logged.

Configure once, at start-up, before anything logs. Modules use ``structlog.get_logger()``;
conversations and turns bind ``conversation_id`` and ``event_id`` (as bound loggers, and as
context variables so that runtime adapters' own log lines carry them too). Third-party libraries'
standard-library records (aiohttp's "Error handling request", for one) go through the same renderer.
Info lines on the latency path (a new conversation, an interruption, a finished turn) go through
:func:`log_after_queued_work`: rendered after the work queued at that moment, never dropped.

Secrets are kept out in two places: fields with sensitive names are masked before rendering
(:class:`SecretRedactor`), and the *rendered line* is searched for every configured secret, as is
and as JSON or ``repr()`` would escape it (:class:`LineRedactor`), so exception messages and
tracebacks, which only exist once rendered, are covered too. Tracebacks never show local variables.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import structlog
import structlog.tracebacks
from pydantic_core import to_json

from voice_channel.settings import Settings, secret_values

__all__ = [
    "REDACTED",
    "LineRedactor",
    "SecretRedactor",
    "configure_logging",
    "log_after_queued_work",
    "setup_logging",
]

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


def _json_escaped(text: str, *, ascii: bool) -> str:
    return json.dumps(text, ensure_ascii=ascii)[1:-1]


class LineRedactor:
    """Processor placed after the renderer: masks every secret in the final line, tracebacks included.

    Each secret is searched as is and in the escaped forms a renderer writes it in (JSON strings,
    ``repr()`` of locals or exception arguments).
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        forms = set()
        for secret in secrets:
            if secret and len(secret) >= 4:
                for text in (secret, repr(secret)[1:-1]):  # a value, or a value inside a repr()
                    forms |= {text, _json_escaped(text, ascii=True), _json_escaped(text, ascii=False)}
        self._forms = sorted(forms, key=len, reverse=True)

    def __call__(self, logger: Any, method: str, line: str) -> str:
        for form in self._forms:
            if form in line:
                line = line.replace(form, REDACTED)
        return line


class _SharedWriteLoggerFactory:
    """Hands every logger the same :class:`structlog.WriteLogger` for the stream.

    structlog's ``WriteLoggerFactory`` builds a new writer per logger, and every conversation binds
    its own logger: ~250 bytes per open conversation for an object that holds nothing but the
    stream. One writer per stream is enough (it keeps no state besides the stream's methods).
    """

    __slots__ = ("_writer",)

    def __init__(self, stream: TextIO) -> None:
        self._writer = structlog.WriteLogger(stream)

    def __call__(self, *args: Any) -> structlog.WriteLogger:
        return self._writer


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
    secrets = list(secrets)
    use_console = fmt == "console" or (fmt == "auto" and stream.isatty())
    renderer: Any
    if use_console:
        # plain_traceback: no local variables, and no box drawing that could wrap a secret over two lines.
        renderer = structlog.dev.ConsoleRenderer(
            colors=stream.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
        exceptions: list[Any] = []
    else:
        renderer = structlog.processors.JSONRenderer(serializer=_to_json)
        exceptions = [
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False, use_rich=False)
            )
        ]
    shared: list[Any] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    rendering: list[Any] = [
        SecretRedactor(secrets),
        structlog.processors.StackInfoRenderer(),
        *exceptions,
        renderer,
        LineRedactor(secrets),
    ]
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, *shared, *rendering],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        # One write per line (PrintLogger writes the newline separately): gunicorn workers share one
        # stderr, and two processes' lines must not interleave mid-line.
        logger_factory=_SharedWriteLoggerFactory(stream),
        cache_logger_on_first_use=cache,
    )
    # Standard-library records (third-party libraries) through the same chain, to the same stream.
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *rendering],
        )
    )
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(max(logging.WARNING, _LEVELS[level]))


def setup_logging(
    settings: Settings, *, level: str | None = None, stream: TextIO | None = None, cache: bool = True
) -> None:
    """Configure logging from ``settings``; every secret setting (plugin sections too) is redacted."""
    configure_logging(
        level or settings.log_level, settings.log_format, stream=stream, secrets=secret_values(settings), cache=cache
    )


def log_after_queued_work(logger: Any, level: str, event: str, **fields: Any) -> None:
    """Log a line once the work already queued on the event loop has run, instead of now.

    For lines on the latency path (a new turn, an interruption, a finished turn): rendering and
    writing a line costs tens of microseconds, which would otherwise come before the next turn's
    first chunk. The line is still emitted, two loop passes later (after the callbacks ready now,
    and those they scheduled at once, such as a new turn's first step), with the bound fields
    (``conversation_id``, ``event_id``) and the context variables of the moment it was logged.
    A level the logger filters out costs nothing; without a running event loop the line is logged at once.
    """
    if not logger.is_enabled_for(_LEVELS[level]):
        return
    line = functools.partial(getattr(logger, level), event, **fields)
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        line()
        return
    # call_soon runs each hop in a copy of the current context: the context variables go along.
    loop.call_soon(loop.call_soon, line)
