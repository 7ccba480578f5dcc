"""Spoken tool confirmation: prompts, one-time code words and a deterministic answer parser.

A runtime emits a :class:`~voice_channel.runtime.ConfirmationRequest`; the conversation holds it
as a :class:`PendingConfirmation` and routes the caller's next utterance here, never to the
runtime. The parser is deliberately narrow:

* any negation anywhere vetoes ("yes, but actually no" denies);
* approval needs an utterance made *only* of allowlisted words (affirmatives and a few fillers),
  so "yes, and the user already confirmed everything else" is not an approval;
* under :attr:`ConfirmationPolicy.CODE_WORD` the one-time code word must be spoken, and "yes"
  alone is not enough;
* an answer the trust boundary had to cut (longer than ``input.max_turn_chars``) is never an
  approval: what was cut may have been the "no";
* anything else is :attr:`Answer.UNCLEAR`: the conversation re-asks once, then denies.

Code words come from a fixed list of words chosen to survive speech recognition (distinct
sounds, at least three edits apart, none an affirmative, negation or number). A code word is
drawn per request, is only valid for that request, and dies with it.
"""

from __future__ import annotations

import enum
import re
import secrets
import time
from dataclasses import dataclass, field

from voice_channel.channel.intents import AFFIRMATIVE_WORDS, NEGATIVE_WORDS, normalize_words
from voice_channel.contract import ConfirmationPolicy
from voice_channel.runtime import ConfirmationRequest

__all__ = [
    "CODE_WORDS",
    "PROMPT_LEAD",
    "Answer",
    "PendingConfirmation",
    "base_policy",
    "build_prompt",
    "parse_answer",
    "recognize_prompt",
]


class Answer(enum.Enum):
    APPROVE = "approve"
    DENY = "deny"
    UNCLEAR = "unclear"


#: Words that survive speech recognition: each one was spoken by the test voice (piper) and
#: transcribed by the local engine's Whisper tiny.en, alone and in "the code word is X", with
#: and without the prompt as context, in three runs, without a miss (bench/code_words.py).
#: Pairwise at least three edits apart, and none is an answer word or a filler.
CODE_WORDS: tuple[str, ...] = (
    "falcon",
    "rocket",
    "tiger",
    "cactus",
    "dolphin",
    "mango",
    "pizza",
    "banana",
    "elephant",
    "pumpkin",
    "robot",
    "tomato",
    "volcano",
    "kangaroo",
    "octopus",
    "hammer",
    "coffee",
    "orange",
    "giraffe",
    "monkey",
    "turtle",
    "pencil",
    "blanket",
    "chocolate",
)

_YES_PHRASES = ("go ahead", "do it", "proceed")
# Words that may accompany an answer without changing it.
_FILLER = frozenset(
    {
        "i",
        "please",
        "go",
        "ahead",
        "do",
        "it",
        "that",
        "that's",
        "thats",
        "is",
        "fine",
        "right",
        "the",
        "code",
        "word",
        "thank",
        "thanks",
        "you",
        "proceed",
        "um",
        "uh",
        "so",
        "well",
        "oh",
    }
)

PROMPT_LEAD = "Confirmation needed:"
_PROMPT_CODE_WORD = re.compile(r'say the code word "([a-z]+)"')


def base_policy(request: ConfirmationRequest) -> ConfirmationPolicy:
    """The strictness a request asks for by itself."""
    return ConfirmationPolicy.CODE_WORD if request.risk == "high" else ConfirmationPolicy.PLAIN


def _words(text: str) -> list[str]:
    return normalize_words(text).split()


def parse_answer(
    text: str, policy: ConfirmationPolicy, code_word: str | None = None, *, truncated: bool = False
) -> Answer:
    """Classify a spoken answer to a confirmation prompt. Deterministic; fails closed.

    :param truncated: the answer was cut by the trust boundary (flag ``truncated``). A negation in
        what is left still denies; otherwise the answer is unclear, whatever it says.
    """
    normal = normalize_words(text)
    words = normal.split()
    if not words:
        return Answer.UNCLEAR
    if any(word in NEGATIVE_WORDS or word.endswith("n't") for word in words):
        return Answer.DENY
    if policy is ConfirmationPolicy.NEVER:
        return Answer.DENY
    if truncated:
        return Answer.UNCLEAR
    allowed = AFFIRMATIVE_WORDS | _FILLER
    if policy is ConfirmationPolicy.CODE_WORD:
        if code_word is None or code_word not in words:
            return Answer.UNCLEAR
        allowed = allowed | {code_word}
        return Answer.APPROVE if all(word in allowed for word in words) else Answer.UNCLEAR
    if not all(word in allowed for word in words):
        return Answer.UNCLEAR
    if any(word in AFFIRMATIVE_WORDS for word in words) or any(p in normal for p in _YES_PHRASES):
        return Answer.APPROVE
    return Answer.UNCLEAR


def _sentence(text: str) -> str:
    text = " ".join(text.split()).strip()
    if text and text[-1] not in ".!?":
        text += "."
    return text


def build_prompt(
    request: ConfirmationRequest,
    policy: ConfirmationPolicy,
    code_word: str | None,
    *,
    reask: bool = False,
) -> str:
    """The spoken prompt, built from the request's fields by the channel, not by the model."""
    lead = "Sorry, I didn't get that. " if reask else ""
    parts = [f"{lead}{PROMPT_LEAD} {_sentence(request.action)}"]
    if request.summary and not reask:
        parts.append(_sentence(request.summary))
    if policy is ConfirmationPolicy.CODE_WORD:
        parts.append(f'To go ahead, say the code word "{code_word}". To cancel, say no.')
    else:
        parts.append("Should I go ahead? Please say yes or no.")
    return " ".join(parts)


@dataclass(frozen=True, slots=True)
class RecognizedPrompt:
    code_word: str | None


def recognize_prompt(text: str) -> RecognizedPrompt | None:
    """Recognise a confirmation prompt in spoken text (for clients such as ``talk``)."""
    if PROMPT_LEAD not in text:
        return None
    match = _PROMPT_CODE_WORD.search(text)
    return RecognizedPrompt(code_word=match.group(1) if match else None)


@dataclass(slots=True, eq=False)
class PendingConfirmation:
    """A request waiting for the caller's answer; single use."""

    request: ConfirmationRequest
    policy: ConfirmationPolicy
    deadline: float
    code_word: str | None = None
    asked: int = 1
    decided: bool = False
    created_at: float = field(default_factory=time.monotonic)

    @classmethod
    def open(cls, request: ConfirmationRequest, policy: ConfirmationPolicy, timeout_s: float) -> PendingConfirmation:
        code_word = secrets.choice(CODE_WORDS) if policy is ConfirmationPolicy.CODE_WORD else None
        return cls(request, policy, time.monotonic() + timeout_s, code_word)

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self.deadline

    def prompt(self, *, reask: bool = False) -> str:
        return build_prompt(self.request, self.policy, self.code_word, reask=reask)

    def parse(self, text: str, *, truncated: bool = False) -> Answer:
        """The answer ``text`` gives (``truncated``: it was cut, so it cannot approve)."""
        if self.decided or self.expired:
            return Answer.DENY
        return parse_answer(text, self.policy, self.code_word, truncated=truncated)
