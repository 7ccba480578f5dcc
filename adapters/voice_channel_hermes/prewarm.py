"""Pre-warm Hermes's agent machinery when the platform starts, not on the first call.

The first message after ``hermes gateway`` starts pays for everything Hermes does lazily: importing
the agent (``run_agent`` and its tool modules), discovering and checking tools (which, with lazy
installs on, pip-installs missing packages such as Edge TTS for the default ``tts`` toolset), and
building an ``AIAgent``. :func:`prewarm_agent` does that once, in a worker thread, with the
gateway's own configuration for this platform: it builds a throwaway agent (no session, no memory,
no context files) and closes it. Hermes's own first agent then finds its modules imported, its
tools resolved and its model metadata cached. The platform reports not ready until it is done
(see ``ElevenLabsVoiceAdapter.readiness``). Best effort: a failure is logged and changes nothing.

It uses gateway helpers that are module functions of ``gateway.run`` (``_load_gateway_config``,
``_resolve_gateway_model``, ``_resolve_runtime_agent_kwargs``) and ``hermes_cli.tools_config``'s
``_get_platform_tools``: the same calls the gateway makes before its own ``AIAgent(...)``.
"""

from __future__ import annotations

import logging
import time

from voice_channel_hermes import PLATFORM

__all__ = ["prewarm_agent"]

logger = logging.getLogger(__name__)


def prewarm_agent() -> float:
    """Build and close one agent as the gateway would for this platform; return the seconds it took.

    Blocking: run it in a thread. Never raises (a failed pre-warm only means a slower first call).
    """
    started = time.perf_counter()
    try:
        from gateway.run import _load_gateway_config, _resolve_gateway_model, _resolve_runtime_agent_kwargs
        from hermes_cli.tools_config import _get_platform_tools
        from run_agent import AIAgent

        config = _load_gateway_config()
        agent_config = config.get("agent") or {}
        agent = AIAgent(
            model=_resolve_gateway_model(config),
            **_resolve_runtime_agent_kwargs(),
            quiet_mode=True,
            verbose_logging=False,
            enabled_toolsets=sorted(_get_platform_tools(config, PLATFORM)),
            disabled_toolsets=agent_config.get("disabled_toolsets") or None,
            platform=PLATFORM,
            skip_context_files=True,
            skip_memory=True,
        )
        agent.close()
    except Exception as exc:
        logger.warning("%s: pre-warming Hermes's agent failed (the first call will be slower): %s", PLATFORM, exc)
    return time.perf_counter() - started
