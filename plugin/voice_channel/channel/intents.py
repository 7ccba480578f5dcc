"""The channel's fixed intent phrases, matched on whole utterances, in every supported language.

The words themselves live in :mod:`voice_channel.channel.languages` (one vocabulary per language);
the trust boundary (:mod:`voice_channel.channel.untrusted`) matches a whole utterance here, in English
and in the conversation's language, and the confirmation parser
(:mod:`voice_channel.channel.confirmations`) uses the same vocabularies. Matching is deterministic:
lower-cased words, punctuation removed, the whole utterance compared (one phrase, or phrases of one intent
only: "stop, stop"), never a model's guess.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from voice_channel.channel.languages import ENGLISH, LANGUAGES, Vocabulary
from voice_channel.runtime import Intent

__all__ = [
    "AFFIRMATIVE_WORDS",
    "INTENT_PHRASES",
    "NEGATIVE_WORDS",
    "intent_phrases",
    "match_intent",
    "normalize_words",
]

_WHITESPACE = re.compile(r"\s+")

#: English words that say yes (kept for callers that predate the language vocabularies).
AFFIRMATIVE_WORDS = ENGLISH.approve
#: English words that say no, negations included.
NEGATIVE_WORDS = ENGLISH.deny | ENGLISH.negation


def intent_phrases(vocabulary: Vocabulary) -> dict[Intent, frozenset[str]]:
    """The whole-utterance phrases of each intent in one language."""
    return {
        Intent.STOP: vocabulary.stop,
        Intent.CANCEL: vocabulary.cancel,
        Intent.REPEAT: vocabulary.repeat,
        Intent.CONFIRM: vocabulary.confirm,
        Intent.DENY: vocabulary.refuse,
    }


#: The English intent phrases.
INTENT_PHRASES: dict[Intent, frozenset[str]] = intent_phrases(ENGLISH)


def _by_phrase(code: str) -> dict[str, Intent]:
    # English first, then the language's own phrases: a phrase both have ("ok") keeps one meaning,
    # and a phrase that is a stop in one and a confirm in the other cannot exist (tested).
    table = {phrase: intent for intent, phrases in INTENT_PHRASES.items() for phrase in phrases}
    for intent, phrases in intent_phrases(LANGUAGES[code]).items():
        for phrase in phrases:
            table.setdefault(phrase, intent)
    return table


_INTENT_BY_PHRASE: Mapping[str, Mapping[str, Intent]] = {code: _by_phrase(code) for code in LANGUAGES}
# Room for the longest phrase plus punctuation and spacing; anything longer is not an intent.
_INTENT_MAX_CHARS = 2 * max(len(phrase) for table in _INTENT_BY_PHRASE.values() for phrase in table)
_PUNCTUATION = re.compile(r"[^\w\s']+")


def normalize_words(text: str) -> str:
    """Lower-case words with punctuation removed, for phrase matching."""
    text = text.replace("\u2019", "'").replace("\u2018", "'").casefold()
    return _WHITESPACE.sub(" ", _PUNCTUATION.sub(" ", text)).strip()


def match_intent(text: str, language: str = "en") -> Intent | None:
    """The channel intent of the *whole* utterance, if it is one of the fixed phrases.

    :param language: the conversation's language (a code of :data:`~voice_channel.channel.languages.LANGUAGES`);
        its phrases count besides English.
    """
    if len(text) > _INTENT_MAX_CHARS:
        return None
    table = _INTENT_BY_PHRASE[language]
    normal = normalize_words(text)
    intent = table.get(normal)
    if intent is None and " " in normal:
        intent = _run_of_phrases(normal.split(), table)
    return intent


def _run_of_phrases(words: list[str], table: Mapping[str, Intent]) -> Intent | None:
    """The intent of an utterance made only of phrases of that one intent ("stop, stop", "stop. be quiet")."""
    # reach[i]: the intents of which words[:i] is a run of phrases (position 0 starts any).
    reach: list[set[Intent | None]] = [set() for _ in range(len(words) + 1)]
    reach[0].add(None)
    for start in range(len(words)):
        if not reach[start]:
            continue
        for end in range(start + 1, len(words) + 1):
            intent = table.get(" ".join(words[start:end]))
            if intent is not None and (None in reach[start] or intent in reach[start]):
                reach[end].add(intent)
    found = reach[-1]
    return next(iter(found)) if len(found) == 1 else None
