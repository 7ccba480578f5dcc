"""``voice-channel engine create|get|update|list|delete``: the Speech Engine resource, through the SDK."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from elevenlabs.core.api_error import ApiError

from voice_channel.channel.languages import LANGUAGES, normalize_language
from voice_channel.cli.common import config_option, fail, header, load
from voice_channel.elevenlabs.api import (
    NoApiKey,
    check_engine_id,
    classify,
    open_client,
    request_options,
    validation_details,
)
from voice_channel.elevenlabs.engines import (
    ENV_NAME,
    EngineChanges,
    create_engine,
    describe_engine,
    engine_as_json,
    update_engine,
    write_env_file,
)
from voice_channel.settings import Settings

__all__ = ["engine"]

T = TypeVar("T")

#: Default cascade timeout of a new engine: the longest ElevenLabs allows. The channel's own filler phrase
#: still speaks after turn.first_text_deadline_s; a slow runtime then never makes ElevenLabs re-send the turn.
DEFAULT_CASCADE_TIMEOUT_S = 15.0


def upstream_failure(message: str) -> click.ClickException:
    """ElevenLabs (or the network) failed: one clear line, exit status 1."""
    return click.ClickException(message)


def _run(settings: Settings, action: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``action(client)`` with an SDK client; SDK and HTTP failures become one readable line."""

    async def main() -> T:
        async with open_client(settings) as client:
            return await action(client)

    try:
        return asyncio.run(main())
    except NoApiKey as exc:
        raise fail(str(exc)) from None
    except Exception as exc:
        failure = classify(exc)
        if failure is None:
            raise
        lines = [failure.message]
        if failure.kind == "not_found":
            lines = ["ElevenLabs has no such Speech Engine (check the id: `voice-channel engine list`)."]
        if failure.kind == "unreachable":
            where = settings.elevenlabs.base_url or "https://api.elevenlabs.io"
            lines = [f"Cannot reach ElevenLabs at {where} ({type(exc).__name__})."]
        if isinstance(exc, ApiError) and exc.status_code == 422:
            lines += [f"  {line}" for line in validation_details(exc)]
        raise upstream_failure("\n".join(lines)) from None


def _engine_id(settings: Settings, given: str | None) -> str:
    engine_id = given or settings.elevenlabs.speech_engine_id
    if engine_id is None:
        raise fail(f"which engine? Give its id, or set {ENV_NAME}")
    try:
        return check_engine_id(engine_id)
    except ValueError as exc:
        raise fail(str(exc)) from None


def _show(config: Any, as_json: bool, title: str) -> None:
    if as_json:
        click.echo(json.dumps(engine_as_json(config), indent=2, sort_keys=True))
        return
    click.echo(title)
    for label, value in describe_engine(config):
        click.echo(f"  {label:<16} {value}")


def _headers(values: tuple[str, ...]) -> dict[str, str]:
    return dict(header(value) for value in values)


def _check_ws_url(url: str) -> str:
    if not url.startswith(("wss://", "ws://")):
        raise fail(f"--ws-url must be a wss:// URL (ElevenLabs connects to it), got {url!r}")
    if url.startswith("ws://"):
        click.echo("warning: ws:// is unencrypted; ElevenLabs should reach your server over wss://", err=True)
    return url


#: Longest backchannel term; more is not a backchannel but a sentence.
MAX_IGNORE_TERM_CHARS = 40
MAX_IGNORE_TERMS = 100
_LANGUAGE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")


def _silence_timeout(_ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    if value is None or value == -1 or 1 <= value <= 7200:
        return value
    raise click.BadParameter(f"{value} is neither -1 (never end the call) nor 1 to 7200 seconds", param=param)


def _ignore_terms(_ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> list[str]:
    terms: list[str] = []
    for value in values:
        term = " ".join(value.split())
        if not term:
            raise click.BadParameter("an ignore term cannot be empty", param=param)
        if len(term) > MAX_IGNORE_TERM_CHARS:
            raise click.BadParameter(
                f"{term[:20]!r}... is longer than {MAX_IGNORE_TERM_CHARS} characters: an ignore term is a short"
                " backchannel such as uh-huh, matched against the whole utterance",
                param=param,
            )
        if term.casefold() not in {t.casefold() for t in terms}:
            terms.append(term)
    if len(terms) > MAX_IGNORE_TERMS:
        raise click.BadParameter(f"at most {MAX_IGNORE_TERMS} ignore terms, got {len(terms)}", param=param)
    return terms


def _languages(_ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> list[str]:
    for value in values:
        if not _LANGUAGE.match(value):
            raise click.BadParameter(f"{value!r} is not a language code such as en or pt-BR", param=param)
    return list(dict.fromkeys(values))


def _language(_ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not _LANGUAGE.match(value):
        raise click.BadParameter(f"{value!r} is not a language code such as en or pt-BR", param=param)
    return value


_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


def _variable(_ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not _VARIABLE.match(value):
        raise click.BadParameter(f"{value!r} is not a dynamic variable name such as caller_language", param=param)
    return value


def _language_header(settings: Settings, options: dict[str, Any], changes: EngineChanges, *, creating: bool) -> None:
    """The header that tells the channel a conversation's language (confirmations.language_header)."""
    header = settings.confirmations.language_header
    variable, wanted, language = options["language_variable"], options["language_header"], options["language"]
    if variable is not None and wanted is False:
        raise fail("give either --language-variable or --no-language-header, not both")
    if variable is not None:
        # Per conversation: the client sets the variable when it starts the session.
        changes.headers[header] = {"variable_name": variable}
    elif wanted is False:
        if not creating:
            changes.remove_headers.append(header)
    elif language is not None:
        code = normalize_language(language)
        if code is not None:
            changes.headers[header] = code
        else:
            click.echo(
                f"warning: spoken confirmations understand {', '.join(LANGUAGES)}; conversations in {language}"
                f" get them in {settings.confirmations.language} (confirmations.language)",
                err=True,
            )
    elif wanted:
        raise fail("--language-header needs --language (or use --language-variable)")


def engine_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The settings ``create`` and ``update`` share."""
    options = [
        click.option("--name", help="Engine name."),
        click.option("--ws-url", help="The WebSocket URL ElevenLabs connects to, e.g. wss://voice.example.com/ws."),
        click.option("--header", "headers", multiple=True, metavar="NAME:VALUE", help="Request header to send."),
        click.option(
            "--secret-header/--no-secret-header",
            default=None,
            help="Send auth.header_secret in auth.header_name (create: on when a secret is configured).",
        ),
        click.option("--voice-id", help="TTS voice id."),
        click.option("--tts-model", help="TTS model, e.g. eleven_flash_v2, eleven_turbo_v2, eleven_multilingual_v2."),
        click.option("--tts-speed", type=click.FloatRange(0.7, 1.2), help="Speaking speed."),
        click.option("--tts-stability", type=click.FloatRange(0, 1), help="Voice stability."),
        click.option("--tts-similarity", type=click.FloatRange(0, 1), help="Voice similarity boost."),
        click.option("--asr-provider", help="Speech recognition: elevenlabs, scribe_realtime or scribe_v2_turbo."),
        click.option("--keyword", "keywords", multiple=True, help="Word the recogniser should expect (repeatable)."),
        click.option("--turn-timeout", type=click.FloatRange(1, 30), help="Seconds of silence before a re-prompt."),
        click.option("--turn-eagerness", type=click.Choice(["patient", "normal", "eager"]), help="Turn taking."),
        click.option(
            "--initial-wait-time",
            type=click.FloatRange(1, 300),
            help="Seconds to wait for the caller to speak first, without a first message (default: turn timeout).",
        ),
        click.option(
            "--silence-end-call-timeout",
            type=float,
            callback=_silence_timeout,
            help="Seconds of caller silence that end the call (-1: never).",
        ),
        click.option(
            "--spelling-patience",
            type=click.Choice(["auto", "off"]),
            help="Wait longer while the caller spells numbers and names (auto) or never (off).",
        ),
        click.option(
            "--speculative-turn/--no-speculative-turn",
            default=None,
            help="Start the reply during silence before the turn is certain (faster; more runtime calls).",
        ),
        click.option(
            "--retranscribe-on-turn-timeout/--no-retranscribe-on-turn-timeout",
            default=None,
            help="At the turn timeout, transcribe again what VAD thought was no speech.",
        ),
        click.option("--turn-model", type=click.Choice(["turn_v2", "turn_v3"]), help="ElevenLabs' turn model."),
        click.option(
            "--ignore-term",
            "ignore_terms",
            multiple=True,
            callback=_ignore_terms,
            help="Backchannel that does not interrupt the agent, e.g. uh-huh (repeatable; replaces the list).",
        ),
        click.option("--clear-ignore-terms", is_flag=True, help="Remove every interruption ignore term."),
        click.option(
            "--ignore-term-language",
            "ignore_term_languages",
            multiple=True,
            callback=_languages,
            help="Language whose curated ignore terms ElevenLabs activates, e.g. en (repeatable).",
        ),
        click.option(
            "--merge-default-ignore-terms/--no-merge-default-ignore-terms",
            default=None,
            help="Use the curated terms of the --ignore-term-language languages as well as --ignore-term.",
        ),
        click.option("--max-duration", type=click.IntRange(1), help="Longest conversation, in seconds."),
        click.option("--record-voice/--no-record-voice", default=None, help="Let ElevenLabs keep call audio."),
        click.option("--retention-days", type=click.IntRange(-1), help="Days ElevenLabs keeps data (-1: default)."),
        click.option("--zero-retention/--no-zero-retention", default=None, help="ElevenLabs' zero-retention mode."),
        click.option(
            "--language",
            callback=_language,
            help="Conversation language, e.g. es or pt-BR; also sent to this server as confirmations.language_header.",
        ),
        click.option(
            "--language-variable",
            callback=_variable,
            metavar="NAME",
            help="Send confirmations.language_header from this dynamic variable (a language per conversation).",
        ),
        click.option(
            "--language-header/--no-language-header",
            default=None,
            help="Send (default with --language) or stop sending confirmations.language_header.",
        ),
        click.option("--tag", "tags", multiple=True, help="Tag (repeatable; replaces the engine's tags)."),
        click.option(
            "--allow-first-message/--no-allow-first-message",
            default=None,
            help="Let the browser page set what the agent says first (ui.first_message).",
        ),
        click.option(
            "--cascade-timeout",
            type=click.FloatRange(2, 15),
            help="Seconds ElevenLabs waits for the first text of a reply (2-15; create default: 15).",
        ),
        click.option("--json", "as_json", is_flag=True, help="Machine-readable output."),
        config_option,
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _changes(settings: Settings, options: dict[str, Any], *, creating: bool) -> EngineChanges:
    changes = EngineChanges(
        name=options["name"],
        ws_url=_check_ws_url(options["ws_url"]) if options["ws_url"] else None,
        headers=_headers(options["headers"]),
        language=options["language"],
        tags=list(options["tags"]) or None,
        allow_first_message=options["allow_first_message"],
        cascade_timeout_s=options["cascade_timeout"],
    )
    secret_header = options["secret_header"]
    secret = settings.auth.header_secret
    if secret_header is None and creating:
        secret_header = secret is not None
    if secret_header:
        if secret is None:
            raise fail("--secret-header needs auth.header_secret (VOICE_CHANNEL_AUTH__HEADER_SECRET)")
        changes.headers[settings.auth.header_name] = secret.get_secret_value()
    elif secret_header is False and not creating:
        changes.remove_headers.append(settings.auth.header_name)
    _language_header(settings, options, changes, creating=creating)
    changes.set("tts", "voice_id", options["voice_id"])
    changes.set("tts", "model_id", options["tts_model"])
    changes.set("tts", "speed", options["tts_speed"])
    changes.set("tts", "stability", options["tts_stability"])
    changes.set("tts", "similarity_boost", options["tts_similarity"])
    changes.set("asr", "provider", options["asr_provider"])
    changes.set("asr", "keywords", list(options["keywords"]) or None)
    changes.set("turn", "turn_timeout", options["turn_timeout"])
    changes.set("turn", "turn_eagerness", options["turn_eagerness"])
    changes.set("turn", "initial_wait_time", options["initial_wait_time"])
    changes.set("turn", "silence_end_call_timeout", options["silence_end_call_timeout"])
    changes.set("turn", "spelling_patience", options["spelling_patience"])
    changes.set("turn", "speculative_turn", options["speculative_turn"])
    changes.set("turn", "retranscribe_on_turn_timeout", options["retranscribe_on_turn_timeout"])
    changes.set("turn", "turn_model", options["turn_model"])
    if options["clear_ignore_terms"] and options["ignore_terms"]:
        raise fail("give either --ignore-term or --clear-ignore-terms, not both")
    changes.set(
        "turn", "interruption_ignore_terms", [] if options["clear_ignore_terms"] else options["ignore_terms"] or None
    )
    changes.set("turn", "interruption_ignore_term_languages", options["ignore_term_languages"] or None)
    changes.set("turn", "merge_with_default_ignore_terms", options["merge_default_ignore_terms"])
    changes.set("conversation", "max_duration_seconds", options["max_duration"])
    changes.set("privacy", "record_voice", options["record_voice"])
    changes.set("privacy", "retention_days", options["retention_days"])
    changes.set("privacy", "zero_retention_mode", options["zero_retention"])
    return changes


@click.group()
def engine() -> None:
    """Create and manage the Speech Engine that points ElevenLabs at this server."""


@engine.command()
@engine_options
@click.option(
    "--write-env",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"Write {ENV_NAME}=<new id> into this env file (other lines are kept).",
)
def create(write_env: Path | None, **options: Any) -> None:
    """Create a Speech Engine whose ws_url is this server (default: server.public_url + server.path)."""
    settings, _ = load(options.pop("config_file"), {})
    as_json = options.pop("as_json")
    if write_env is not None:
        _check_env_file(write_env)
    changes = _changes(settings, options, creating=True)
    if changes.ws_url is None:
        if settings.server.public_ws_url is None:
            raise fail("give --ws-url wss://your-host/ws, or set server.public_url (VOICE_CHANNEL_SERVER__PUBLIC_URL)")
        changes.ws_url = _check_ws_url(settings.server.public_ws_url)
    if changes.cascade_timeout_s is None:
        changes.cascade_timeout_s = DEFAULT_CASCADE_TIMEOUT_S
    if changes.name is None:
        changes.name = "voice-channel"
    resource = _run(settings, lambda client: create_engine(client, settings, changes))
    _show(resource.config, as_json, f"Created Speech Engine {resource.engine_id}")
    if write_env is not None:
        try:
            replaced = write_env_file(write_env, resource.engine_id)
        except (OSError, UnicodeDecodeError) as exc:  # changed since it was checked
            raise click.ClickException(
                f"cannot write --write-env {write_env} ({exc}): set {ENV_NAME}={resource.engine_id} yourself"
            ) from None
        click.echo(f"{'Updated' if replaced else 'Wrote'} {ENV_NAME} in {write_env}", err=True)
    elif not as_json:
        click.echo(f"Next: export {ENV_NAME}={resource.engine_id}", err=True)


def _check_env_file(path: Path) -> None:
    """Refuse an env file ``create --write-env`` could not update, before the engine is created."""
    try:
        if path.exists():
            path.read_text(encoding="utf-8")
        elif not path.parent.is_dir():
            raise FileNotFoundError(f"no directory {path.parent}")
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(f"cannot update --write-env {path} ({exc}); no engine was created") from None


@engine.command()
@click.argument("engine_id", required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@config_option
def get(engine_id: str | None, as_json: bool, config_file: str | None) -> None:
    """Show a Speech Engine (default: the configured one)."""
    settings, _ = load(config_file, {})
    engine_id = _engine_id(settings, engine_id)
    resource = _run(
        settings, lambda client: client.speech_engine.get(engine_id, request_options=request_options(settings))
    )
    _show(resource.config, as_json, f"Speech Engine {engine_id}")


@engine.command()
@click.argument("engine_id", required=False)
@engine_options
def update(engine_id: str | None, **options: Any) -> None:
    """Change a Speech Engine (default: the configured one); only the options given are sent."""
    settings, _ = load(options.pop("config_file"), {})
    as_json = options.pop("as_json")
    engine_id = _engine_id(settings, engine_id)
    changes = _changes(settings, options, creating=False)
    if changes.is_empty():
        raise fail("nothing to change: give at least one option (see --help)")
    resource = _run(settings, lambda client: update_engine(client, settings, engine_id, changes))
    _show(resource.config, as_json, f"Updated Speech Engine {engine_id}")


@engine.command(name="list")
@click.option("--search", help="Only engines whose name contains this.")
@click.option("--all", "every", is_flag=True, help="Every page, not only the first.")
@click.option("--page-size", type=click.IntRange(1, 100), default=30, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@config_option
def list_(search: str | None, every: bool, page_size: int, as_json: bool, config_file: str | None) -> None:
    """List the account's Speech Engines."""
    settings, _ = load(config_file, {})

    async def fetch(client: Any) -> tuple[list[Any], bool]:
        found: list[Any] = []
        cursor = None
        while True:
            arguments: dict[str, Any] = {"page_size": page_size}
            if search:
                arguments["search"] = search
            if cursor:
                arguments["cursor"] = cursor
            page = await client.speech_engine.list(**arguments, request_options=request_options(settings))
            found.extend(page.speech_engines or [])
            if not page.has_more or not page.next_cursor:
                return found, False
            if not every:
                return found, True
            cursor = page.next_cursor

    engines, more = _run(settings, fetch)
    if as_json:
        rows = [e.model_dump(mode="json", exclude_none=True) for e in engines]
        click.echo(json.dumps({"speech_engines": rows, "has_more": more}, indent=2, sort_keys=True))
        return
    if not engines:
        click.echo("No Speech Engines.")
        return
    configured = settings.elevenlabs.speech_engine_id
    for item in engines:
        mark = "*" if item.speech_engine_id == configured else " "
        tags = f"  [{', '.join(item.tags)}]" if item.tags else ""
        click.echo(f"{mark} {item.speech_engine_id}  {item.name}{tags}")
    if more:
        click.echo("(more: --all)", err=True)


@engine.command()
@click.argument("engine_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@config_option
def delete(engine_id: str, yes: bool, config_file: str | None) -> None:
    """Delete a Speech Engine. Conversations through it stop working."""
    settings, _ = load(config_file, {})
    engine_id = _engine_id(settings, engine_id)
    if not yes:
        click.confirm(f"Delete Speech Engine {engine_id}?", abort=True)
    _run(settings, lambda client: client.speech_engine.delete(engine_id, request_options=request_options(settings)))
    click.echo(f"Deleted Speech Engine {engine_id}")
    if engine_id == settings.elevenlabs.speech_engine_id:
        click.echo(f"warning: {ENV_NAME} still names the deleted engine", err=True)
