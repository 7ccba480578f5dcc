"""Interruption ignore terms: backchannels ("uh-huh", "gotcha") that do not interrupt the agent.

The local engine's reading of the Speech Engine setting ``turn.interruption_ignore_terms`` ("terms that should
not trigger an interruption … case-insensitive exact matching"): the whole barge-in transcript must be one of the
terms. Case, surrounding punctuation and the separators inside a term do not count, so Whisper's "Uh-huh." and
"uh huh" both match the term ``uh-huh``; "uh-huh, stop" does not.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["IgnoreTerms", "normalise"]

_SEPARATORS = re.compile(r"[\W_]+")


def normalise(text: str) -> str:
    """Case-folded words of ``text`` joined by single spaces: punctuation, hyphens and spacing removed."""
    return " ".join(_SEPARATORS.sub(" ", text.casefold()).split())


class IgnoreTerms:
    """The set of backchannels that do not interrupt; empty means every utterance interrupts."""

    def __init__(self, terms: Iterable[str]) -> None:
        self._terms = frozenset(filter(None, (normalise(term) for term in terms)))

    def __bool__(self) -> bool:
        return bool(self._terms)

    def matches(self, transcript: str) -> bool:
        """Whether the whole ``transcript`` is one of the terms."""
        return normalise(transcript) in self._terms
