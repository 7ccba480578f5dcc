"""The spoken-answer parser: deterministic, and failing closed (deny on doubt)."""

from __future__ import annotations

import pytest

from voice_channel.channel.confirmations import Answer, PendingConfirmation, parse_answer
from voice_channel.contract import ConfirmationPolicy
from voice_channel.runtime import ConfirmationRequest

PLAIN, CODE_WORD, NEVER = ConfirmationPolicy.PLAIN, ConfirmationPolicy.CODE_WORD, ConfirmationPolicy.NEVER
APPROVE, DENY, UNCLEAR = Answer.APPROVE, Answer.DENY, Answer.UNCLEAR


def case(said: str, policy: ConfirmationPolicy, expected: Answer, name: str, code_word: str | None = "falcon"):
    return pytest.param(said, policy, code_word, expected, id=name)


@pytest.mark.parametrize(
    ("said", "policy", "code_word", "expected"),
    [
        # --- plain: yes and no words
        case("yes", PLAIN, APPROVE, "plain-yes"),
        case("Yes, please.", PLAIN, APPROVE, "plain-yes-please"),
        case("yeah go ahead", PLAIN, APPROVE, "plain-yeah-go-ahead"),
        case("okay, do it", PLAIN, APPROVE, "plain-okay-do-it"),
        case("go ahead", PLAIN, APPROVE, "plain-phrase-without-a-yes-word"),
        case("um, sure, that's fine", PLAIN, APPROVE, "plain-fillers-around-sure"),
        case("no", PLAIN, DENY, "plain-no"),
        case("Nope.", PLAIN, DENY, "plain-nope"),
        case("not now", PLAIN, DENY, "plain-not-now"),
        case("I can't", PLAIN, DENY, "plain-contraction-negates"),
        # --- negation anywhere vetoes
        case("No, don't.", PLAIN, DENY, "negation-no-dont"),
        case("Don\u2019t", PLAIN, DENY, "negation-curly-apostrophe"),
        case("yes but no", PLAIN, DENY, "negation-yes-but-no"),
        case("yes, but actually no", PLAIN, DENY, "negation-yes-but-actually-no"),
        case("yes wait", PLAIN, DENY, "negation-yes-wait"),
        case("falcon, no", CODE_WORD, DENY, "negation-beats-the-code-word"),
        # --- code words (high risk)
        case("falcon", CODE_WORD, APPROVE, "code-word-alone"),
        case("The code word is Falcon.", CODE_WORD, APPROVE, "code-word-in-a-sentence"),
        case("yes, falcon", CODE_WORD, APPROVE, "code-word-with-yes"),
        case("yes", CODE_WORD, UNCLEAR, "code-word-yes-is-not-enough"),
        case("rocket", CODE_WORD, UNCLEAR, "code-word-wrong-word"),
        case("falcon and also wire the money", CODE_WORD, UNCLEAR, "code-word-with-an-extra-request"),
        case("falcon", CODE_WORD, UNCLEAR, "code-word-missing-from-the-request", code_word=None),
        # --- never by voice
        case("yes", NEVER, DENY, "never-yes"),
        case("falcon", NEVER, DENY, "never-code-word"),
        # --- unclear: the conversation re-asks once, then denies
        case("maybe", PLAIN, UNCLEAR, "unclear-maybe"),
        case("please", PLAIN, UNCLEAR, "unclear-fillers-only"),
        case("yes and delete my other files too", PLAIN, UNCLEAR, "unclear-yes-with-more"),
        case("yes, the user already confirmed everything", PLAIN, UNCLEAR, "unclear-yes-with-a-claim"),
        # A cut-off answer (the transcript capped mid-word) is judged on its words alone: no flag reaches the parser.
        case("yes and also transf", PLAIN, UNCLEAR, "truncated-after-yes"),
        # --- empty
        case("", PLAIN, UNCLEAR, "empty"),
        case("   ", PLAIN, UNCLEAR, "empty-whitespace"),
        case("?!", PLAIN, UNCLEAR, "empty-punctuation-only"),
        case("", CODE_WORD, UNCLEAR, "empty-code-word"),
    ],
)
def test_parse_answer(said, policy, code_word, expected):
    assert parse_answer(said, policy, code_word) is expected


def test_a_pending_confirmation_is_single_use_and_expires():
    request = ConfirmationRequest(id="r", action="Delete it")
    pending = PendingConfirmation.open(request, PLAIN, timeout_s=60)
    assert pending.parse("yes") is APPROVE
    pending.decided = True
    assert pending.parse("yes") is DENY
    expired = PendingConfirmation.open(request, PLAIN, timeout_s=0)
    assert expired.expired and expired.parse("yes") is DENY


@pytest.mark.parametrize(
    ("language", "said"),
    [
        ("en", "Is that okay?"),
        ("en", "Is it correct?"),
        ("en", "So I go ahead?"),
        ("en", "okay, is it?"),
        ("es", "\u00bfEst\u00e1 bien?"),
        ("fr", "C'est bon ?"),
        ("pt", "Pode?"),
        ("pt", "T\u00e1 bom?"),
        ("de", "In Ordnung?"),
        ("en", "Is that okay\uff1f"),  # a fullwidth question mark: the parser does not rely on NFKC having run
    ],
)
def test_a_question_is_not_an_approval(language, said):
    assert parse_answer(said, ConfirmationPolicy.PLAIN, language=language) is Answer.UNCLEAR


def test_a_question_with_a_no_still_denies_and_a_plain_yes_still_approves():
    assert parse_answer("yes? no.", ConfirmationPolicy.PLAIN) is Answer.DENY
    assert parse_answer("Yes, go ahead.", ConfirmationPolicy.PLAIN) is Answer.APPROVE


@pytest.mark.parametrize(
    ("language", "said"),
    [("de", "Na ja."), ("de", "Na ja, okay."), ("en", "na ja"), ("en", "Yeah, right."), ("fr", "yeah right")],
)
def test_a_doubting_idiom_made_of_yes_words_is_no_approval(language, said):
    # "na" is a German filler ("na klar" says yes) and "ja" a yes; together they say "well...".
    assert parse_answer(said, ConfirmationPolicy.PLAIN, language=language) is Answer.UNCLEAR


def test_the_yes_words_of_a_doubting_idiom_still_approve_on_their_own():
    assert parse_answer("Na klar.", ConfirmationPolicy.PLAIN, language="de") is Answer.APPROVE
    assert parse_answer("Ja.", ConfirmationPolicy.PLAIN, language="de") is Answer.APPROVE
    assert parse_answer("Yeah, that's right.", ConfirmationPolicy.PLAIN) is Answer.APPROVE
