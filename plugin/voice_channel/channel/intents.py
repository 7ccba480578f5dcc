"""The spoken vocabulary: the words that say yes and no, and the channel's fixed intent phrases.

One place for the words both the trust boundary (:mod:`voice_channel.channel.untrusted`, which matches a
whole utterance against :data:`INTENT_PHRASES`) and the confirmation parser
(:mod:`voice_channel.channel.confirmations`) listen for. Matching is deterministic: lower-cased words,
punctuation removed, the whole utterance compared, never a model's guess.
"""

from __future__ import annotations

import re

from voice_channel.runtime import Intent

__all__ = [
    "AFFIRMATIVE_WORDS",
    "INTENT_PHRASES",
    "NEGATIVE_WORDS",
    "match_intent",
    "normalize_words",
]

_WHITESPACE = re.compile(r"\s+")

#: Words that say yes, for the intent map and the confirmation parser alike.
AFFIRMATIVE_WORDS = frozenset(
    {
        "yes",
        "yeah",
        "yep",
        "yup",
        "sure",
        "ok",
        "okay",
        "confirm",
        "confirmed",
        "approve",
        "approved",
        "affirmative",
        "absolutely",
        "definitely",
        "correct",
        "alright",
    }
)
#: Words that say no; any of them anywhere in an answer vetoes it.
NEGATIVE_WORDS = frozenset(
    {
        "no",
        "not",
        "nope",
        "nah",
        "never",
        "don't",
        "dont",
        "stop",
        "cancel",
        "wait",
        "hold",
        "deny",
        "denied",
        "reject",
        "refuse",
        "abort",
        "negative",
        "without",
        "nothing",
        "neither",
        "nor",
        "nobody",
        "none",
        "shouldn't",
        "can't",
        "won't",
        "mustn't",
        "isn't",
    }
)

INTENT_PHRASES: dict[Intent, frozenset[str]] = {
    Intent.STOP: frozenset(
        {
            "stop",
            "stop it",
            "stop that",
            "stop talking",
            "stop please",
            "please stop",
            "be quiet",
            "quiet",
            "quiet please",
            "shut up",
            "hush",
            "enough",
            "that's enough",
            "thats enough",
        }
    ),
    Intent.CANCEL: frozenset(
        {
            "cancel",
            "cancel that",
            "cancel it",
            "cancel please",
            "please cancel",
            "never mind",
            "nevermind",
            "forget it",
            "forget that",
            "abort",
        }
    ),
    Intent.REPEAT: frozenset(
        {
            "repeat",
            "repeat that",
            "repeat please",
            "please repeat",
            "repeat that please",
            "say that again",
            "say it again",
            "say again",
            "come again",
            "what did you say",
            "can you repeat that",
            "could you repeat that",
            "pardon",
            "sorry what",
            "once more",
        }
    ),
    Intent.CONFIRM: AFFIRMATIVE_WORDS | {"go ahead", "do it", "yes please", "yes go ahead", "sure go ahead"},
    Intent.DENY: frozenset(
        {
            "no",
            "nope",
            "nah",
            "don't",
            "do not",
            "deny",
            "no thanks",
            "no thank you",
            "negative",
            "don't do it",
            "do not do it",
        }
    ),
}
_INTENT_BY_PHRASE = {phrase: intent for intent, phrases in INTENT_PHRASES.items() for phrase in phrases}
# Room for the longest phrase plus punctuation and spacing; anything longer is not an intent.
_INTENT_MAX_CHARS = 2 * max(map(len, _INTENT_BY_PHRASE))
_PUNCTUATION = re.compile(r"[^\w\s']+")


def normalize_words(text: str) -> str:
    """Lower-case words with punctuation removed, for phrase matching."""
    text = text.replace("\u2019", "'").replace("\u2018", "'").casefold()
    return _WHITESPACE.sub(" ", _PUNCTUATION.sub(" ", text)).strip()


def match_intent(text: str) -> Intent | None:
    """The channel intent of the *whole* utterance, if it is one of the fixed phrases."""
    if len(text) > _INTENT_MAX_CHARS:
        return None
    return _INTENT_BY_PHRASE.get(normalize_words(text))
