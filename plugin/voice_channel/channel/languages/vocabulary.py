"""What one language contributes to spoken confirmations and intents: a frozen :class:`Vocabulary`.

A vocabulary is data, not logic: the parser (:mod:`voice_channel.channel.confirmations`) and the
intent map (:mod:`voice_channel.channel.intents`) decide how the words are used. Every word is
stored the way :func:`~voice_channel.channel.intents.normalize_words` leaves speech: lower-case,
punctuation other than apostrophes removed (so "vas-y" is the two words "vas y").
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Phrases", "Vocabulary"]


@dataclass(frozen=True, slots=True)
class Phrases:
    """What the channel says in this language (built by the channel, never by a model)."""

    #: Starts every confirmation prompt; clients such as ``talk`` recognise a prompt by it.
    prompt_lead: str
    #: After the action and summary, for a plain yes/no confirmation.
    ask_plain: str
    #: After the action and summary, for a code word; ``{code}`` is the quoted code word.
    ask_code_word: str
    #: Before the prompt when the first answer was unclear.
    reask: str
    #: When a policy refuses a request outright ("never by voice").
    refusal: str
    #: At the start of the turn after a confirmation timed out.
    timeout: str
    #: When *repeat* is asked before anything was said.
    nothing_to_repeat: str
    #: When the caller exceeds the turn rate.
    slow_down: str
    #: The plain yes and no, for hints such as ``talk``'s.
    yes: str
    no: str


@dataclass(frozen=True, slots=True)
class Vocabulary:
    """The words one language answers and commands with."""

    #: ISO 639-1 code (``en``, ``es``...), the value of ``confirmations.language``.
    code: str
    #: English name, for messages and the README.
    name: str
    #: Single words that say yes. Approval needs at least one of them (or an :attr:`approve_phrases`).
    approve: frozenset[str]
    #: Multi-word ways of saying yes ("go ahead"), matched on the normalised utterance.
    approve_phrases: frozenset[str]
    #: Words that may accompany a yes without changing it ("please", "the code word is").
    filler: frozenset[str]
    #: Words that say no or stop; any of them, from any language, anywhere in an answer, denies.
    deny: frozenset[str]
    #: Negation markers ("not", "nicht", "pas"); they veto like :attr:`deny`.
    negation: frozenset[str]
    #: Word endings or beginnings that negate ("n't"; French "n'" as in "n'importe").
    negation_suffixes: tuple[str, ...]
    negation_prefixes: tuple[str, ...]
    #: One-time code words: concrete nouns, plain ASCII, pairwise at least three edits apart.
    code_words: tuple[str, ...]
    #: Whether :attr:`code_words` were checked through speech recognition (bench/code_words.py).
    code_words_voice_tested: bool
    #: Whole utterances that are a channel intent.
    stop: frozenset[str]
    cancel: frozenset[str]
    repeat: frozenset[str]
    confirm: frozenset[str]
    refuse: frozenset[str]
    phrases: Phrases
    #: Idioms made of yes and filler words that do not say yes ("na ja", "yeah right"): from any language,
    #: an answer holding one is unclear, so the question is asked again.
    doubt_phrases: frozenset[str] = frozenset()

    def negates(self, word: str) -> bool:
        """Whether ``word`` is a no, a stop or a negation in this language."""
        return (
            word in self.deny
            or word in self.negation
            or word.endswith(self.negation_suffixes)
            or word.startswith(self.negation_prefixes)
        )
