"""Spoken tool confirmation: prompts, one-time code words and a deterministic answer parser.

A runtime emits a :class:`~voice_channel.runtime.ConfirmationRequest`; the conversation holds it
as a :class:`PendingConfirmation` and routes the caller's next utterance here, never to the
runtime. The parser is deliberately narrow, in every language of
:mod:`voice_channel.channel.languages`:

* any no, stop or negation word of *any* supported language, anywhere, vetoes ("yes, but
  actually no", "sí pero no", "yes nein" deny);
* approval needs an utterance made *only* of allowlisted words (affirmatives and a few fillers)
  of the conversation's language or English, so "yes, and the user already confirmed everything
  else" is not an approval, nor is "ja" in a French conversation;
* look-alike letters of other scripts ("yеs" with a Cyrillic е) never approve; they are folded to
  Latin only to find a "no" ("nо" with a Cyrillic о denies);
* under :attr:`ConfirmationPolicy.CODE_WORD` the one-time code word must be spoken, and "yes"
  alone is not enough;
* an answer the trust boundary had to cut (longer than ``input.max_turn_chars``) is never an
  approval: what was cut may have been the "no";
* a doubting idiom made of yes words ("na ja", "yeah right") is no yes;
* anything else is :attr:`Answer.UNCLEAR`: the conversation re-asks once, then denies.

Deny on doubt has a price, paid on purpose: "why not", "pourquoi pas" and "sí, cómo no" mean yes
and are denied (they hold a "no"); the caller is asked nothing more and says it again plainly.

Code words come from a fixed list per language, chosen to survive speech recognition (distinct
sounds, at least three edits apart, none an answer word in any language). A code word is drawn per
request, is only valid for that request, and dies with it.
"""

from __future__ import annotations

import enum
import re
import secrets
import time
import unicodedata
from dataclasses import dataclass, field

from voice_channel.channel.confusables import has_confusables, skeleton
from voice_channel.channel.intents import normalize_words
from voice_channel.channel.languages import DEFAULT_LANGUAGE, ENGLISH, LANGUAGES, Phrases, Vocabulary, vocabulary
from voice_channel.contract import ConfirmationPolicy
from voice_channel.runtime import ConfirmationRequest

__all__ = [
    "CODE_WORDS",
    "PROMPT_LEAD",
    "Answer",
    "PendingConfirmation",
    "RecognizedPrompt",
    "base_policy",
    "build_prompt",
    "code_words",
    "parse_answer",
    "recognize_prompt",
]


class Answer(enum.Enum):
    APPROVE = "approve"
    DENY = "deny"
    UNCLEAR = "unclear"


#: The English code words (see :data:`voice_channel.channel.languages.en.ENGLISH`); each language has its own.
CODE_WORDS: tuple[str, ...] = ENGLISH.code_words
#: English filler words (kept for callers that predate the language vocabularies).
_FILLER = ENGLISH.filler

PROMPT_LEAD = ENGLISH.phrases.prompt_lead
_ANY_LANGUAGE = tuple(LANGUAGES.values())
#: Every no, stop and negation word of every language: a veto whatever the conversation's language.
_ANY_NO = frozenset().union(*(v.deny | v.negation for v in _ANY_LANGUAGE))
_ANY_NO_SUFFIX = tuple(suffix for v in _ANY_LANGUAGE for suffix in v.negation_suffixes)
#: A question mark (fullwidth and small ones included, whether or not NFKC ran first) or Spanish's opening one.
_QUESTION = re.compile(r"[?¿\uff1f\ufe16\u037e\u061f]")
_ANY_NO_PREFIX = tuple(prefix for v in _ANY_LANGUAGE for prefix in v.negation_prefixes)
#: Every doubting idiom of every language ("na ja" is no yes in an English conversation either).
_ANY_DOUBT = tuple(f" {phrase} " for v in _ANY_LANGUAGE for phrase in v.doubt_phrases)


def _approving(language: Vocabulary) -> tuple[tuple[Vocabulary, ...], frozenset[str], frozenset[str]]:
    """What an approval may be made of in a conversation in ``language``: its words and English ones
    (the vocabularies, their yes words, and their yes words with fillers)."""
    spoken = (ENGLISH, language) if language is not ENGLISH else (ENGLISH,)
    approve = frozenset().union(*(v.approve for v in spoken))
    return spoken, approve, approve.union(*(v.filler for v in spoken))


#: Per conversation language, built once rather than for every answer.
_APPROVING = {v.code: _approving(v) for v in _ANY_LANGUAGE}
#: Per language, the code word as its prompt quotes it ('say the code word "falcon"').
_PROMPT_CODE_WORD = {
    v.code: re.compile(re.escape(v.phrases.ask_code_word.split('"{code}"')[0]) + r'"([a-z]+)"') for v in _ANY_LANGUAGE
}


def code_words(language: str = DEFAULT_LANGUAGE) -> tuple[str, ...]:
    """The code words of a language (English reads :data:`CODE_WORDS`, which tests may narrow)."""
    return CODE_WORDS if language == ENGLISH.code else vocabulary(language).code_words


def base_policy(request: ConfirmationRequest) -> ConfirmationPolicy:
    """The strictness a request asks for by itself."""
    return ConfirmationPolicy.CODE_WORD if request.risk == "high" else ConfirmationPolicy.PLAIN


def _negates(word: str) -> bool:
    return word in _ANY_NO or word.endswith(_ANY_NO_SUFFIX) or word.startswith(_ANY_NO_PREFIX)


def _plain(word: str) -> str:
    """``word`` without accents, for code words ("tigre" and "tígre" are one word to the ear)."""
    return "".join(c for c in unicodedata.normalize("NFD", word) if not unicodedata.combining(c))


def parse_answer(
    text: str,
    policy: ConfirmationPolicy,
    code_word: str | None = None,
    *,
    truncated: bool = False,
    language: str = DEFAULT_LANGUAGE,
) -> Answer:
    """Classify a spoken answer to a confirmation prompt. Deterministic; fails closed.

    :param truncated: the answer was cut by the trust boundary (flag ``truncated``). A negation in
        what is left still denies; otherwise the answer is unclear, whatever it says.
    :param language: the conversation's language: its yes words count besides English; the no
        words of every supported language count whatever it is.
    """
    normal = normalize_words(text)
    lookalikes = has_confusables(normal)
    if lookalikes:
        normal = skeleton(normal)
    words = normal.split()
    if not words:
        return Answer.UNCLEAR
    if any(_negates(word) for word in words):
        return Answer.DENY
    if policy is ConfirmationPolicy.NEVER:
        return Answer.DENY
    if truncated or lookalikes or _QUESTION.search(text) or _doubts(normal):
        # A look-alike letter is nothing speech recognition writes: never an approval. Nor is a question
        # ("Is that okay?", "¿Está bien?"): the caller asked something back. Nor is "na ja" ("well...").
        return Answer.UNCLEAR
    spoken, approve, allowed = _APPROVING[language]
    if policy is ConfirmationPolicy.CODE_WORD:
        plain = [_plain(word) for word in words]
        if code_word is None or code_word not in plain:
            return Answer.UNCLEAR
        ok = all(word in allowed or p == code_word for word, p in zip(words, plain, strict=True))
        return Answer.APPROVE if ok else Answer.UNCLEAR
    if not all(word in allowed for word in words):
        return Answer.UNCLEAR
    if any(word in approve for word in words) or _has_phrase(normal, spoken):
        return Answer.APPROVE
    return Answer.UNCLEAR


def _doubts(normal: str) -> bool:
    padded = f" {normal} "
    return any(phrase in padded for phrase in _ANY_DOUBT)


def _has_phrase(normal: str, spoken: tuple[Vocabulary, ...]) -> bool:
    padded = f" {normal} "
    return any(f" {phrase} " in padded for v in spoken for phrase in v.approve_phrases)


def _sentence(text: str) -> str:
    text = " ".join(text.split()).strip()
    if text and text[-1] not in ".!?":
        text += "."
    return text


def _question(phrases: Phrases, action: str) -> str:
    """The prompt's lead and the action: what the caller must have heard to answer (see ``asked_in``)."""
    return f"{phrases.prompt_lead} {_sentence(action)}"


def build_prompt(
    request: ConfirmationRequest,
    policy: ConfirmationPolicy,
    code_word: str | None,
    *,
    reask: bool = False,
    language: str = DEFAULT_LANGUAGE,
) -> str:
    """The spoken prompt, built from the request's fields by the channel, not by the model.

    The request's ``action`` and ``summary`` are the runtime's words, spoken as they are; the rest
    is in the conversation's ``language``.
    """
    phrases = vocabulary(language).phrases
    lead = f"{phrases.reask} " if reask else ""
    parts = [f"{lead}{_question(phrases, request.action)}"]
    if request.summary and not reask:
        parts.append(_sentence(request.summary))
    if policy is ConfirmationPolicy.CODE_WORD:
        parts.append(phrases.ask_code_word.format(code=code_word))
    else:
        parts.append(phrases.ask_plain)
    return " ".join(parts)


@dataclass(frozen=True, slots=True)
class RecognizedPrompt:
    code_word: str | None
    #: The language the prompt was spoken in.
    language: str = DEFAULT_LANGUAGE


def recognize_prompt(text: str) -> RecognizedPrompt | None:
    """Recognise a confirmation prompt, in any supported language, in spoken text (for clients such as ``talk``)."""
    for language in _ANY_LANGUAGE:
        lead = language.phrases.prompt_lead
        if lead in text:
            match = _PROMPT_CODE_WORD[language.code].search(text, text.index(lead))
            return RecognizedPrompt(code_word=match.group(1) if match else None, language=language.code)
    return None


@dataclass(slots=True, eq=False)
class PendingConfirmation:
    """A request waiting for the caller's answer; single use."""

    request: ConfirmationRequest
    policy: ConfirmationPolicy
    deadline: float
    code_word: str | None = None
    language: str = DEFAULT_LANGUAGE
    asked: int = 1
    decided: bool = False
    created_at: float = field(default_factory=time.monotonic)

    @classmethod
    def open(
        cls,
        request: ConfirmationRequest,
        policy: ConfirmationPolicy,
        timeout_s: float,
        language: str = DEFAULT_LANGUAGE,
    ) -> PendingConfirmation:
        code_word = secrets.choice(code_words(language)) if policy is ConfirmationPolicy.CODE_WORD else None
        return cls(request, policy, time.monotonic() + timeout_s, code_word, language)

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self.deadline

    def prompt(self, *, reask: bool = False) -> str:
        return build_prompt(self.request, self.policy, self.code_word, reask=reask, language=self.language)

    def asked_in(self, heard: str) -> bool:
        """Whether ``heard``, what the caller heard of the channel's last reply, holds this request's question
        (the prompt's lead and the whole action): an utterance over a question not yet heard is no answer to it."""
        question = _question(vocabulary(self.language).phrases, self.request.action).rstrip(".!?")
        return " ".join(question.split()).casefold() in " ".join(heard.split()).casefold()

    def parse(self, text: str, *, truncated: bool = False) -> Answer:
        """The answer ``text`` gives (``truncated``: it was cut, so it cannot approve)."""
        if self.decided or self.expired:
            return Answer.DENY
        return parse_answer(text, self.policy, self.code_word, truncated=truncated, language=self.language)
