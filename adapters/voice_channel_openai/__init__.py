"""``openai`` runtime: any server that speaks OpenAI-compatible streamed chat completions.

Hermes Agent's API server, LiteLLM, vLLM, Ollama, OpenClaw's HTTP endpoint... The adapter keeps
the conversation history itself (the channel's own record), explains the voice style and the
spotlighting boundary in a short system prompt, streams ``POST {base_url}/chat/completions``
with ``stream: true`` and closes the HTTP stream when the caller interrupts.
"""

__all__ = ["OpenAISettings"]

from voice_channel_openai.settings import OpenAISettings
