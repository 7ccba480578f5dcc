"""The languages spoken confirmations and intents understand, and how a conversation's is chosen.

Each language is one module holding a frozen :class:`~.vocabulary.Vocabulary`; this package only
registers them and turns a language tag ("pt-BR", "es_ES", "DE") into a supported code.
A conversation's language comes from the ``confirmations.language`` setting, or per conversation
from the ``confirmations.language_header`` the engine sends at the WebSocket handshake.
"""

from __future__ import annotations

from collections.abc import Mapping

from voice_channel.channel.languages.de import GERMAN
from voice_channel.channel.languages.en import ENGLISH
from voice_channel.channel.languages.es import SPANISH
from voice_channel.channel.languages.fr import FRENCH
from voice_channel.channel.languages.pt import PORTUGUESE
from voice_channel.channel.languages.vocabulary import Phrases, Vocabulary
from voice_channel.contract import normalize_language

__all__ = [
    "DEFAULT_LANGUAGE",
    "ENGLISH",
    "LANGUAGES",
    "Phrases",
    "Vocabulary",
    "language_from_headers",
    "normalize_language",
    "vocabulary",
]

DEFAULT_LANGUAGE = "en"
#: Every supported language by code, English first (the fallback and the always-accepted second language).
LANGUAGES: Mapping[str, Vocabulary] = {v.code: v for v in (ENGLISH, SPANISH, GERMAN, FRENCH, PORTUGUESE)}
# voice_channel.contract.LANGUAGE_CODES names the codes (settings and hooks see them, and the contract imports no
# implementation module); this registry has a vocabulary for each, in that order (tested).


def vocabulary(code: str) -> Vocabulary:
    """The vocabulary of a supported code (as returned by :func:`normalize_language`)."""
    return LANGUAGES[code]


def language_from_headers(headers: Mapping[str, str], header: str, default: str) -> tuple[str, str | None]:
    """A conversation's language: the header's value if it names a supported language, else ``default``.

    Returns the code and, when the header was present but unusable, its (truncated) value so the
    caller can log it; an unknown language never fails a conversation.
    """
    wanted = header.lower()
    value = next((v for k, v in headers.items() if k.lower() == wanted), None)
    if value is None or not value.strip():
        return default, None
    code = normalize_language(value)
    if code is None:
        return default, value[:40]
    return code, None
