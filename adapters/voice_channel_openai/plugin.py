"""The ``openai`` runtime plugin: registered through the ``voice_channel`` entry-point group.

Nothing heavy is imported here: the runtime module is imported by the factory, so that listing
plugins never depends on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from voice_channel import hookimpl
from voice_channel_openai.settings import OpenAISettings

if TYPE_CHECKING:
    from voice_channel import Runtime, Settings


def _factory(settings: Settings) -> Runtime:
    from voice_channel_openai.runtime import OpenAIRuntime

    return OpenAIRuntime(settings)


@hookimpl
def voice_channel_register_runtimes(register):  # type: ignore[no-untyped-def]
    register(
        "openai",
        _factory,
        "Any OpenAI-compatible chat server (Hermes API server, LiteLLM, vLLM, Ollama...), streamed.",
    )


@hookimpl
def voice_channel_register_settings(register):  # type: ignore[no-untyped-def]
    register("openai", OpenAISettings)
