"""Speech shaping, phrase chunking, and text extraction from LLM SDK stream chunks."""

from __future__ import annotations

from types import SimpleNamespace as NS

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voice_channel.channel.speech import PhraseChunker, SpeechShaper, extract_text, shape_text

# --- extraction ---


@pytest.mark.parametrize(
    ("chunk", "text"),
    [
        ("plain", "plain"),
        ({"type": "response.output_text.delta", "delta": "resp"}, "resp"),
        ({"choices": [{"delta": {"content": "chat"}}]}, "chat"),
        (NS(choices=[NS(delta=NS(content="chat-obj"))]), "chat-obj"),
        ({"choices": [{"delta": {"tool_calls": [{}]}}]}, None),
        ({"choices": []}, None),
        ({"type": "content_block_delta", "delta": {"type": "text_delta", "text": "claude"}}, "claude"),
        ({"type": "content_block_delta", "delta": {"type": "input_json_delta", "partial_json": "{"}}, None),
        (NS(type="content_block_delta", delta=NS(type="text_delta", text="claude-obj")), "claude-obj"),
        ({"candidates": [{"content": {"parts": [{"text": "gem"}, {"text": "ini"}]}}]}, "gemini"),
        ({"candidates": [{"content": {"parts": [{"text": "hmm", "thought": True}, {"text": "ok"}]}}]}, "ok"),
        ({"candidates": [{"content": {"parts": [{"text": "hmm", "thought": True}]}}]}, None),
        ({"type": "message_stop"}, None),
        (None, None),
        (42, None),
        (b"bytes", None),
    ],
)
def test_extract_text(chunk, text):
    assert extract_text(chunk) == text


# --- shaping ---


@pytest.mark.parametrize(
    ("markdown", "spoken"),
    [
        ("Plain words, nothing else.", "Plain words, nothing else."),
        ("# Title\nBody text.", "Title. Body text."),
        ("Some **bold** and *italic* and __under__ text.", "Some bold and italic and under text."),
        ("Use `pip install x` now.", "Use pip install x now."),
        ("- milk\n- eggs\n", "milk. eggs. "),
        ("1. first\n2. second", "1. first. 2. second"),
        ("> quoted\nplain", "quoted. plain"),
        ("See [the docs](https://example.com/a/b) please.", "See the docs please."),
        ("![a cat](http://x/cat.png) here", "a cat here"),
        ("Go to https://www.example.com/path?q=1.", "Go to example.com."),
        ("Visit <https://example.org/x>", "Visit example.org"),
        ("Before\n```python\nprint('secret code')\n```\nAfter", "Before. After"),
        ("<think>internal musing</think>The answer is 4.", "The answer is 4."),
        ("| a | b |\n|---|---|\n| 1 | 2 |\n", "a, b. 1, 2. "),
        ("Keep snake_case and 2 * 3 = 6", "Keep snake_case and 2 * 3 = 6"),
        ("Line one\n\nLine two.", "Line one. Line two."),
        ("A<br>B", "AB"),
        ('<span class="x">Hi</span> <speak><break time="1s"/>there</speak>', "Hi there"),
        ("Replace <your-api-key> and run it in <project-dir>.", "Replace your-api-key and run it in project-dir."),
        ("It holds when a<b and c>d.", "It holds when a<b and c>d."),  # comparisons, not a <b> tag
        ("x<i or j>y", "x<i or j>y"),
        ("Replace <your api key>.", "Replace your api key."),
        ('<details open><summary>More</summary></details> <a href=x title="y">link</a>', "More link"),
        ("---\nafter rule", "after rule"),
        # A line break after a sentence's end adds no full stop of its own, whatever the script.
        ("Wait\u2026\nok", "Wait\u2026 ok"),
        ("你好。\n世界", "你好。 世界"),
        ("هل أنت هنا؟\nنعم", "هل أنت هنا؟ نعم"),
        ("ठीक है।\nचलो", "ठीक है। चलो"),
    ],
)
def test_shape_text(markdown, spoken):
    assert shape_text(markdown) == spoken


def test_plain_first_words_pass_through_without_delay():
    shaper = SpeechShaper()
    assert shaper.feed("Hello") == "Hello"
    assert shaper.feed(" there") == " there"


def test_unfinished_constructs_are_held_until_decided():
    shaper = SpeechShaper()
    assert shaper.feed("See [the") == "See "
    assert shaper.feed(" docs](https://x.y/") == ""
    assert shaper.feed("z) now") == "the docs now"
    shaper = SpeechShaper()
    assert shaper.feed("go to h") == "go to "
    assert shaper.feed("ttps://example.com/a b") == "example.com b"


MARKDOWN_SAMPLES = [
    "# Plan\n\nFirst, **buy** milk. Then *call* Bob at https://bob.example/x.\n\n- one\n- two\n",
    "Use `code` and [a link](http://a.b/c) or ![img](x.png).\n```js\nalert(1)\n```\nDone.",
    "<think>private</think>Answer: | x | y |\n> note\n1. step",
    "Snake_case_words and 3 * 4, plus __dunder__ ~~strike~~.",
]


@settings(max_examples=200, deadline=None)
@given(sample=st.sampled_from(MARKDOWN_SAMPLES), cuts=st.lists(st.integers(min_value=1, max_value=8), max_size=200))
def test_streaming_in_any_pieces_equals_shaping_at_once(sample, cuts):
    shaper = SpeechShaper()
    out, i = [], 0
    for size in cuts:
        if i >= len(sample):
            break
        out.append(shaper.feed(sample[i : i + size]))
        i += size
    out.append(shaper.feed(sample[i:]))
    out.append(shaper.finish())
    assert "".join(out) == shape_text(sample)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_shaping_never_raises_and_leaves_no_markup_markers(text):
    spoken = shape_text(text)
    assert "**" not in spoken and "```" not in spoken and "](" not in spoken


# --- chunking ---


def test_first_chunk_leaves_at_once_then_phrases_are_coalesced():
    chunker = PhraseChunker(max_chars=200)
    assert chunker.feed("Sure") == "Sure"
    assert chunker.feed(" thing") is None
    assert chunker.feed(", here") == " thing,"
    assert chunker.feed(" is the plan") is None
    assert chunker.feed(". Next") == " here is the plan."
    assert chunker.flush() == " Next"
    assert chunker.flush() is None


def test_long_text_without_punctuation_is_cut_at_a_space_past_the_cap():
    chunker = PhraseChunker(max_chars=20)
    assert chunker.feed("x") == "x"
    out = chunker.feed(" aaaa bbbb cccc dddd eeee ffff")
    assert out is not None and out.endswith(" ") and len(out) <= 31
    assert (out + (chunker.flush() or "")) == " aaaa bbbb cccc dddd eeee ffff"


def test_token_stream_becomes_few_frames():
    chunker = PhraseChunker()
    tokens = [f"w{i}{'.' if i % 12 == 11 else ''} " for i in range(600)]
    frames = [c for c in (chunker.feed(t) for t in tokens) if c] + [chunker.flush() or ""]
    assert "".join(frames) == "".join(tokens).rstrip()
    assert len(frames) <= 60  # 600 tokens, one sentence every 12 words


def test_whitespace_alone_is_not_a_frame():
    chunker = PhraseChunker()
    assert chunker.feed("  ") is None
    assert chunker.feed("Hi") == "  Hi"


def test_a_space_held_after_a_boundary_is_not_pending_text():
    chunker = PhraseChunker()
    assert chunker.feed("Sure. ") == "Sure. "
    assert chunker.feed("Let me look. ") == "Let me look."
    assert not chunker.pending  # only the space before the next words is held
    assert chunker.feed("Found it.") is None
    assert chunker.pending
    assert chunker.flush() == " Found it."


@pytest.mark.parametrize(
    ("first", "tokens", "phrases"),
    [
        # Chinese and Japanese put no space after their punctuation: a phrase ends at it all the same.
        ("好的", ["今天", "天气", "很好", "，", "我们", "去", "公园", "。", "明"], ["今天天气很好，", "我们去公园。"]),
        ("はい", ["わかり", "ました", "。", "では"], ["わかりました。"]),
        # Arabic, Urdu and Hindi have punctuation of their own (followed by a space, as in Latin text).
        ("نعم", [" هل", " تريد", " القهوة", "؟", " حسنا", "،", " شكرا"], [" هل تريد القهوة؟", " حسنا،"]),
        ("ہاں", [" میں", " آ", " رہا", " ہوں", "۔", " ٹھیک"], [" میں آ رہا ہوں۔"]),
        ("जी", [" हाँ", " मैं", " आ", " रहा", " हूँ", "।", " ठीक"], [" हाँ मैं आ रहा हूँ।"]),
    ],
)
def test_phrases_end_at_the_punctuation_of_other_scripts(first, tokens, phrases):
    chunker = PhraseChunker(max_chars=200)
    assert chunker.feed(first) == first
    out = [chunk for chunk in (chunker.feed(token) for token in tokens) if chunk]
    assert out == phrases
    assert first + "".join(out) + (chunker.flush() or "") == first + "".join(tokens)


_CHUNKER_PIECES = st.sampled_from(
    [*"ab .,!?\n\t3\u2026\u3002\u3001\u061f\u0964", "e\u0301", "\U0001f469\u200d\U0001f4bb"]
)


@given(
    tokens=st.lists(st.lists(_CHUNKER_PIECES, max_size=12).map("".join), max_size=40),
    cap=st.integers(20, 60),
    stall_every=st.sampled_from([0, 3, 7]),
)
def test_chunks_joined_are_the_text_fed(tokens, cap, stall_every):
    # Nothing lost or doubled, whatever the script, the cap or the stalls: only whitespace at the very end
    # (no frame for it) is left out.
    chunker = PhraseChunker(max_chars=cap)
    chunks = []
    for i, token in enumerate(tokens, 1):
        chunks.append(chunker.feed(token))
        if stall_every and i % stall_every == 0:
            chunks.append(chunker.flush())
    chunks.append(chunker.flush())
    sent = [chunk for chunk in chunks if chunk is not None]
    assert all(chunk.strip() for chunk in sent)
    text, joined = "".join(tokens), "".join(sent)
    assert text.startswith(joined) and not text[len(joined) :].strip()
    assert not chunker.pending


def _streamed(pieces):
    shaper = SpeechShaper()
    return "".join(shaper.feed(piece) for piece in pieces) + shaper.finish()


@pytest.mark.parametrize(
    ("pieces", "spoken"),
    [
        # Tokenisers give a line's indentation its own token ("\n", "  ", " ```"): a code block under a
        # list item was read aloud, and the text after it dropped (its closing fence opened a block).
        pytest.param(
            ["1. Run:", "\n", "  ", " ```", "bash", "\n", "  ", " rm -rf build", "\n", "  ", " ```", "\n", "Done."],
            "1. Run: Done.",
            id="indented-code-block",
        ),
        pytest.param(
            ["Intro", "\n", "   ", "```", "py\nsecret()\n```\nafter"], "Intro. after", id="fence-closed-at-column-0"
        ),
        pytest.param(
            ["Steps:", "\n", "- one", "\n", "  ", "-", " nested", "\n"], "Steps: one. nested. ", id="nested-bullet"
        ),
        pytest.param(["Intro", "\n", " ", "## Heading", "\n"], "Intro. Heading. ", id="indented-heading"),
        pytest.param(["Intro", "\n", "  ", "> quoted"], "Intro. quoted", id="indented-quote"),
    ],
)
def test_indentation_in_its_own_piece_still_starts_the_line(pieces, spoken):
    assert shape_text("".join(pieces)) == spoken
    assert _streamed(pieces) == spoken


@pytest.mark.parametrize(
    "pieces",
    [
        pytest.param(
            ["Go", " to", " www", ".", "example", ".", "com", "/", "docs", "/", "setup", " today."], id="tokens"
        ),
        pytest.param(["Go to www.example", ".com/docs/setup today."], id="two-pieces"),
    ],
)
def test_a_www_url_streamed_in_pieces_is_its_host_name(pieces):
    # At once: "Go to example.com today."; streamed, the URL was decided at "www.example" and the rest,
    # path included, was read aloud ("example.com/docs/setup").
    assert shape_text("".join(pieces)) == "Go to example.com today."
    shaper = SpeechShaper()
    assert "".join(shaper.feed(piece) for piece in pieces) + shaper.finish() == "Go to example.com today."


@pytest.mark.parametrize(
    ("markdown", "spoken"),
    [
        # Found by test_shaping_never_raises_and_leaves_no_markup_markers, which fails now and then.
        ("[]()", ""),
        ("See [](https://example.com/a/b) here.", "See  here."),
    ],
)
def test_a_link_with_empty_text_leaves_no_brackets(markdown, spoken):
    assert shape_text(markdown) == spoken
