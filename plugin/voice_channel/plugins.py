"""Plugin manager factory and the typed, async-aware facade over the hook relay.

pluggy is synchronous: an ``async def`` hook implementation returns a coroutine. The facade
(:class:`PluginHooks`) calls the implementations one by one, in pluggy's order, and awaits each
answer before asking the next, so that the rest of the channel never touches the raw relay.
pluggy's own call loop cannot do that: it would stop a ``firstresult`` hook at the first
coroutine (before knowing whether it abstains), it cannot hand one transcript hook's message to
the next, and it stops at the first exception, where our hooks isolate a failing plugin. What
the facade's loop cannot honour is refused when a plugin registers (:class:`PluginManager`):
wrappers, and ``async`` registration hooks. The facade also does the tracing
(``VOICE_CHANNEL_TRACE_PLUGINS``), for every hook. There is no module-global manager:
:func:`get_plugin_manager` builds one per app.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import os
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

import pluggy
import structlog
from pluggy import HookImpl, PluginValidationError
from pydantic import BaseModel

from voice_channel import hookspecs
from voice_channel.contract import ConfirmationPolicy, ConversationInfo, TokenDenied
from voice_channel.markers import PROJECT
from voice_channel.runtime import Refusal, RuntimeFactory, RuntimeMessage
from voice_channel.settings import SettingsError

if TYPE_CHECKING:
    from aiohttp import web

    from voice_channel.runtime import ConfirmationRequest

__all__ = [
    "DEFAULT_PLUGINS",
    "ENTRY_POINT_GROUP",
    "MODULES_ENV",
    "PluginHooks",
    "PluginManager",
    "RuntimeEntry",
    "get_plugin_manager",
]

log = structlog.get_logger("voice_channel.plugins")

ENTRY_POINT_GROUP = PROJECT
#: Built-in features, registered as plugins through the same hooks as third-party ones.
DEFAULT_PLUGINS = (
    "voice_channel.default_plugins.echo",
    "voice_channel.default_plugins.demo",
    "voice_channel.default_plugins.token_policy",
)
#: Comma-separated plugin names that must not be loaded.
DISABLE_ENV = "VOICE_CHANNEL_DISABLE_PLUGINS"
#: Comma-separated modules to import and register as plugins, without packaging them.
MODULES_ENV = "VOICE_CHANNEL_PLUGINS"
#: Set to log every hook call (``hook_call`` and ``hook_done`` lines, at info level).
TRACE_ENV = "VOICE_CHANNEL_TRACE_PLUGINS"
#: Implementation options the facade's call loop cannot honour (see :class:`PluginHooks`).
UNSUPPORTED_OPTIONS = ("wrapper", "hookwrapper")
#: Hooks called at start-up, outside any event loop: their implementations must be synchronous.
SYNC_HOOKS = frozenset(name for name in hookspecs.HOOK_NAMES if name.startswith("voice_channel_register_"))


async def await_me_maybe(value: Any) -> Any:
    """Await ``value`` if it is awaitable; hook implementations may be sync or async."""
    if inspect.isawaitable(value):
        return await value
    return value


class PluginManager(pluggy.PluginManager):
    """pluggy's manager, plus what our tolerant entry-point loader learns.

    :meth:`register` refuses implementations the channel cannot call as declared.
    """

    def __init__(self) -> None:
        super().__init__(PROJECT)
        #: Entry-point plugins that failed to import: name -> error.
        self.failed_plugins: dict[str, str] = {}
        #: Distribution ("name version") of each entry-point plugin, by plugin name.
        self.distributions: dict[str, str] = {}
        #: Log every hook call (set from ``VOICE_CHANNEL_TRACE_PLUGINS`` by :func:`get_plugin_manager`).
        self.trace_calls = False

    def register(self, plugin: Any, name: str | None = None) -> str | None:
        """Register ``plugin`` as pluggy does, after refusing what the channel cannot call.

        :raises PluginValidationError: an implementation is a wrapper (``wrapper=True`` or
            ``hookwrapper=True``), or a registration hook is ``async``. Nothing is registered then.
        """
        plugin_name = name or self.get_canonical_name(plugin)
        if plugin is not None and not self.is_blocked(plugin_name):
            self._refuse_unsupported(plugin, plugin_name)
        return super().register(plugin, name)

    def _refuse_unsupported(self, plugin: Any, plugin_name: str) -> None:
        for attr in dir(plugin):
            opts = self.parse_hookimpl_opts(plugin, attr)
            if opts is None:
                continue
            hook = opts.get("specname") or attr
            for option in UNSUPPORTED_OPTIONS:
                if opts.get(option):
                    raise PluginValidationError(
                        plugin,
                        f"{_plugin_label(plugin, plugin_name)}: {hook} is declared @hookimpl({option}=True), which "
                        "voice_channel does not support: the channel calls each implementation itself and awaits "
                        "async ones, so a wrapper would only ever see unawaited coroutines. Implement the hook "
                        f"without {option}=True.",
                    )
            if hook in SYNC_HOOKS and _is_async(getattr(plugin, attr)):
                raise PluginValidationError(
                    plugin,
                    f"{_plugin_label(plugin, plugin_name)}: {hook} is async, but registration hooks run at start-up "
                    "and must be synchronous. Make it a plain def.",
                )


def _plugin_label(plugin: Any, plugin_name: str) -> str:
    kind = plugin.__name__ if inspect.ismodule(plugin) else f"{type(plugin).__module__}.{type(plugin).__qualname__}"
    return f"plugin {plugin_name!r} ({kind})"


def _is_async(function: Any) -> bool:
    return inspect.iscoroutinefunction(function) or inspect.isasyncgenfunction(function)


def get_plugin_manager(
    *, load_entrypoints: bool = True, blocked: Iterable[str] = (), extra_plugins: Iterable[Any] = ()
) -> PluginManager:
    """Build a plugin manager with the built-ins, the installed plugins and ``extra_plugins``.

    :param load_entrypoints: load plugins of the ``voice_channel`` entry-point group. A plugin
        that fails to import is logged and skipped (listed by ``voice-channel plugins``).
    :param blocked: plugin names not to load (added to ``VOICE_CHANNEL_DISABLE_PLUGINS``).
    :param extra_plugins: plugin objects to register too, e.g. a host's own (tests use this).
    """
    pm = PluginManager()
    pm.add_hookspecs(hookspecs)
    for name in [*blocked, *filter(None, os.environ.get(DISABLE_ENV, "").split(","))]:
        pm.set_blocked(name.strip())
    for module_name in DEFAULT_PLUGINS:
        name = module_name.rsplit(".", 1)[-1]
        if not pm.is_blocked(name):
            pm.register(importlib.import_module(module_name), name=name)
    if load_entrypoints:
        _load_entrypoints(pm)
    _load_modules(pm, filter(None, (name.strip() for name in os.environ.get(MODULES_ENV, "").split(","))))
    for plugin in extra_plugins:
        pm.register(plugin)
    pm.check_pending()
    pm.trace_calls = bool(os.environ.get(TRACE_ENV))
    return pm


def _load_entrypoints(pm: PluginManager) -> None:
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
            continue
        try:
            plugin = ep.load()
        except Exception as exc:  # a broken optional plugin must not take the channel down
            pm.failed_plugins[ep.name] = f"{type(exc).__name__}: {exc}"
            log.warning("plugin_load_failed", plugin=ep.name, entry_point=ep.value, error=str(exc))
            continue
        pm.register(plugin, name=ep.name)
        if ep.dist is not None:
            pm.distributions[ep.name] = f"{ep.dist.metadata['name']} {ep.dist.version}"


def _load_modules(pm: PluginManager, names: Iterable[str]) -> None:
    """Register the modules named in ``VOICE_CHANNEL_PLUGINS``: asked for explicitly, so one that
    cannot be imported is an error that names it, not a plugin quietly missing."""

    for name in names:
        if pm.get_plugin(name) is not None or pm.is_blocked(name):
            continue
        try:
            module = importlib.import_module(name)
        except Exception as exc:
            raise SettingsError(
                f"{MODULES_ENV}: cannot import plugin module {name!r} ({type(exc).__name__}: {exc});"
                " check the name and PYTHONPATH"
            ) from None
        pm.register(module, name=name)


@dataclass(frozen=True, slots=True)
class RuntimeEntry:
    name: str
    factory: RuntimeFactory
    description: str
    plugin: str


class _Trace:
    """One traced hook call: a ``hook_call`` line naming the plugins asked, a ``hook_done`` line with the outcome.

    Only plugin names and a summary of the answer are logged, never the arguments: they hold what
    the caller said and the browser's request.
    """

    __slots__ = ("_hook", "_result")

    def __init__(self, hook: str, impls: list[HookImpl]) -> None:
        self._hook: str = hook
        self._result: Any = None
        log.info("hook_call", hook=hook, plugins=[impl.plugin_name for impl in impls])

    def done(self, result: Any) -> None:
        """Record the summary the ``hook_done`` line will carry."""
        self._result = result

    def __enter__(self) -> _Trace:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            log.info("hook_done", hook=self._hook, result=self._result)
        else:
            log.info("hook_done", hook=self._hook, error=exc_type.__name__)


class _Untraced:
    """Stands in for :class:`_Trace` when tracing is off; one shared instance, so an untraced call costs nothing."""

    __slots__ = ()

    def done(self, result: Any) -> None:
        pass

    def __enter__(self) -> _Untraced:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None


_UNTRACED = _Untraced()


class PluginHooks:
    """Typed facade: one method per hook, awaiting async implementations.

    Each method asks the implementations itself, one at a time in pluggy's order (LIFO, ``tryfirst``
    first, ``trylast`` last), passes each only the arguments it accepts (specs can grow without
    breaking plugins) and awaits an async answer before asking the next. Then it applies the hook's
    rule (first result, chain, strictest answer) and its failure policy, per plugin. Why not
    pluggy's call loop: see the module docstring.
    """

    def __init__(self, pm: PluginManager) -> None:
        self.pm = pm

    def _impls(self, hook: str) -> list[HookImpl]:
        """The implementations of ``hook`` in pluggy's own call order (LIFO; tryfirst ... trylast)."""
        return list(reversed(getattr(self.pm.hook, hook).get_hookimpls()))

    def _trace(self, hook: str, impls: list[HookImpl]) -> _Trace | _Untraced:
        return _Trace(hook, impls) if self.pm.trace_calls else _UNTRACED

    @staticmethod
    def _call(impl: HookImpl, **kwargs: Any) -> Any:
        """Call one implementation with the arguments it accepts."""
        return impl.function(**{name: kwargs[name] for name in impl.argnames})

    # --- registration ---

    def runtimes(self) -> dict[str, RuntimeEntry]:
        """All registered runtimes by name. Duplicate names are an error."""
        hook = "voice_channel_register_runtimes"
        found: dict[str, RuntimeEntry] = {}
        impls = self._impls(hook)
        with self._trace(hook, impls) as trace:
            for impl in impls:

                def register(
                    name: str, factory: RuntimeFactory, description: str = "", _plugin: str = impl.plugin_name
                ) -> None:
                    if name in found:
                        raise ValueError(f"runtime {name!r} registered by both {found[name].plugin} and {_plugin}")
                    found[name] = RuntimeEntry(name, factory, description, _plugin)

                self._call(impl, register=register)
            trace.done(sorted(found))
        return found

    def settings_sections(self) -> dict[str, type[BaseModel]]:
        """Settings sections contributed by plugins."""
        hook = "voice_channel_register_settings"
        sections: dict[str, type[BaseModel]] = {}

        def register(section: str, model: type[BaseModel]) -> None:
            if section in sections and sections[section] is not model:
                raise ValueError(f"settings section {section!r} registered twice")
            sections[section] = model

        impls = self._impls(hook)
        with self._trace(hook, impls) as trace:
            for impl in impls:
                self._call(impl, register=register)
            trace.done(sorted(sections))
        return sections

    # --- lifecycle ---

    async def conversation_started(self, conversation: ConversationInfo) -> None:
        await self._notify("voice_channel_conversation_started", conversation=conversation)

    async def conversation_ended(self, conversation: ConversationInfo, reason: str) -> None:
        await self._notify("voice_channel_conversation_ended", conversation=conversation, reason=reason)

    # --- turns ---

    @property
    def has_transcript_hooks(self) -> bool:
        """Whether any plugin implements ``voice_channel_transcript`` (lets turns skip the call)."""
        return bool(self.pm.hook.voice_channel_transcript.get_hookimpls())

    async def transcript(self, message: RuntimeMessage, conversation: ConversationInfo) -> RuntimeMessage | Refusal:
        """Run the transcript hooks in order; each sees the previous one's message."""
        hook = "voice_channel_transcript"
        impls = self._impls(hook)
        with self._trace(hook, impls) as trace:
            replaced_by: list[str] = []
            for impl in impls:
                result = await await_me_maybe(self._call(impl, message=message, conversation=conversation))
                if isinstance(result, Refusal):
                    trace.done(f"refused by plugin {impl.plugin_name}")
                    return result
                if isinstance(result, RuntimeMessage):
                    message = result
                    replaced_by.append(impl.plugin_name)
                elif result is not None:
                    raise TypeError(f"plugin {impl.plugin_name} returned {type(result).__name__} from {hook}")
            trace.done(f"replaced by plugins {replaced_by}" if replaced_by else "passed")
        return message

    async def confirmation_policies(
        self, request: ConfirmationRequest, conversation: ConversationInfo
    ) -> list[ConfirmationPolicy]:
        """Every plugin's answer (``None`` left out); an exception counts as ``NEVER``."""
        hook = "voice_channel_confirmation_policy"
        answers: list[ConfirmationPolicy] = []
        impls = self._impls(hook)
        with self._trace(hook, impls) as trace:
            for impl in impls:
                try:
                    result = await await_me_maybe(self._call(impl, request=request, conversation=conversation))
                except Exception:
                    log.exception("hook_failed", hook=hook, plugin=impl.plugin_name)
                    result = ConfirmationPolicy.NEVER
                if result is not None:
                    answers.append(ConfirmationPolicy(result))
            trace.done([answer.name for answer in answers])
        return answers

    @property
    def has_progress_phrase_hooks(self) -> bool:
        """Whether any plugin implements ``voice_channel_progress_phrase``."""
        return bool(self.pm.hook.voice_channel_progress_phrase.get_hookimpls())

    async def progress_phrase(
        self, *, kind: str, tool: str, count: int, elapsed_s: float, conversation: ConversationInfo
    ) -> str | None:
        """The first plugin's phrase (``""`` = say nothing), or ``None`` for the built-in one.

        An implementation that raises or answers something that is not a string is logged, and the
        built-in phrase is said: a broken plugin must not leave the caller in silence, nor say junk.
        """
        hook = "voice_channel_progress_phrase"
        impls = self._impls(hook)
        with self._trace(hook, impls) as trace:
            for impl in impls:
                try:
                    result = await await_me_maybe(
                        self._call(
                            impl, kind=kind, tool=tool, count=count, elapsed_s=elapsed_s, conversation=conversation
                        )
                    )
                except Exception:
                    log.exception("hook_failed", hook=hook, plugin=impl.plugin_name)
                    trace.done("built-in (plugin failed)")
                    return None
                if result is None:
                    continue
                if not isinstance(result, str):
                    log.warning(
                        "hook_bad_result", hook=hook, plugin=impl.plugin_name, result_type=type(result).__name__
                    )
                    trace.done("built-in (bad answer)")
                    return None
                trace.done(f"plugin {impl.plugin_name}: {'silence' if not result.strip() else 'phrase'}")
                return result
            trace.done("built-in")
        return None

    # --- browser side ---

    async def authorize_token(self, request: web.Request) -> TokenDenied | None:
        """``None`` if the first implementation with an opinion allows the request, else why not.

        Not pluggy's ``firstresult`` call: an ``async`` implementation returns a coroutine, which pluggy would take
        as an answer before it has been awaited. Denied when nobody decides, when an implementation raises, or when
        it returns something that is not a decision.
        """
        hook = "voice_channel_authorize_token"
        impls = self._impls(hook)
        with self._trace(hook, impls) as trace:
            denied = await self._first_decision(hook, impls, request)
            trace.done("allowed" if denied is None else f"denied: {denied.reason}")
        return denied

    async def _first_decision(self, hook: str, impls: list[HookImpl], request: web.Request) -> TokenDenied | None:

        for impl in impls:
            try:
                result = await await_me_maybe(self._call(impl, request=request))
            except Exception:
                log.exception("hook_failed", hook=hook, plugin=impl.plugin_name)
                return TokenDenied(reason=f"plugin {impl.plugin_name} failed")
            if result is None:
                continue
            if result is True:
                return None
            if isinstance(result, TokenDenied):
                return result
            if result is not False:
                log.error("hook_bad_result", hook=hook, plugin=impl.plugin_name, result_type=type(result).__name__)
            return TokenDenied(reason=f"denied by plugin {impl.plugin_name}")
        return TokenDenied(reason="no plugin decided (the built-in token_policy is blocked?)")

    async def _notify(self, hook: str, **kwargs: Any) -> None:
        """Tell every implementation; one that raises is logged and the others are still told."""
        impls = self._impls(hook)
        if not impls and not self.pm.trace_calls:
            return  # the common case (no plugin listens), on a new conversation's first-chunk path
        with self._trace(hook, impls):
            for impl in impls:
                try:
                    await await_me_maybe(self._call(impl, **kwargs))
                except Exception:
                    log.exception("hook_failed", hook=hook, plugin=impl.plugin_name)

    # --- introspection ---

    def describe(self) -> list[dict[str, Any]]:
        """Registered plugins with their hooks and distribution, for ``voice-channel plugins``."""
        described = []
        for plugin in self.pm.get_plugins():
            name = str(self.pm.get_name(plugin))
            hooks = sorted(caller.name for caller in self.pm.get_hookcallers(plugin) or [])
            described.append(
                {
                    "name": name,
                    "hooks": hooks,
                    "builtin": name in {m.rsplit(".", 1)[-1] for m in DEFAULT_PLUGINS},
                    "distribution": self.pm.distributions.get(name),
                }
            )
        for name, error in self.pm.failed_plugins.items():
            described.append({"name": name, "hooks": [], "builtin": False, "distribution": None, "error": error})
        return sorted(described, key=lambda item: str(item["name"]))
