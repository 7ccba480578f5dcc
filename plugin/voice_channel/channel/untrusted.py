"""The untrusted-input adapter: the only path from a transcript to a runtime.

Speech is untrusted input. The caller, or audio playing nearby, can say anything, prompt
injection included, and the history ElevenLabs sends is a copy the channel does not control.
Every transcript goes through the same deterministic steps, in this order:

1. **Schema**: roles ``user``/``agent`` only, string content; a bad item is skipped and
   counted, the turn is still answered. Only the newest ``user`` item becomes the utterance;
   ``agent`` items are never instructions (they only trim the channel's own record). A history
   whose newest item is the agent's has nothing new from the caller: nothing is answered
   (flag :data:`NOTHING_NEW`).
2. **Unicode**: NFKC; control, format, private-use, unassigned, zero-width, bidi, tag and
   variation-selector characters and invisible fillers are removed (speech recognition never
   produces them, so any hit is logged as an anomaly); whitespace is collapsed.
3. **Caps**: the utterance is cut at a word boundary (flagged ``truncated``); only the last
   ``max_history_items`` history items are looked at; turns per minute are limited.
4. **Role markers** (``system:``, ``<|im_start|>``, ``[INST]``, ``<<SYS>>``, ``### Instruction``,
   role tags, tool-call braces, a leading ``/`` command) are *defused*: rewritten into plain words
   that no runtime reads as structure, never silently deleted. The conversation's own spotlighting
   marker is removed so that it cannot be forged.
5. **Intents**: a fixed map (stop, cancel, repeat, confirm, deny) is matched on the whole
   utterance before any runtime sees it, in English and in the conversation's language.
6. **Provenance**: the result is a :class:`~voice_channel.runtime.RuntimeMessage` with
   ``source="voice"``, ``trust="untrusted"``, the conversation and event ids, the flags, and a
   per-conversation random boundary marker for runtimes that take a text prompt.
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from voice_channel.channel.confusables import CONFUSABLES, skeleton
from voice_channel.channel.intents import match_intent
from voice_channel.channel.protocol import is_history_item
from voice_channel.runtime import Intent, RuntimeMessage

__all__ = [
    "NOTHING_NEW",
    "Utterance",
    "cap_text",
    "clean_text",
    "defuse_markers",
    "new_boundary",
    "read_transcript",
    "sanitize",
    "to_runtime_message",
]

# --- Unicode ----------------------------------------------------------------------------------

# Categories removed outright: control (except tab/newline, turned into spaces), format (which
# holds zero-width, bidi and tag characters), surrogates, private use, unassigned.
_STRIP_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})
# Invisible characters in other categories: variation selectors (Mn), fillers (Lo), and the
# like, which render as nothing and can smuggle text past a human reader.
_INVISIBLE = frozenset(
    [
        *range(0xFE00, 0xFE10),  # variation selectors
        *range(0xE0100, 0xE01F0),  # variation selectors supplement
        *range(0x180B, 0x1810),  # Mongolian free variation selectors and vowel separator
        *range(0x1D173, 0x1D17B),  # musical symbol formatting
        0x034F,
        0x115F,
        0x1160,
        0x17B4,
        0x17B5,
        0x2800,
        0x3164,
        0xFFA0,
        0x1D159,
    ]
)
_KEEP_AS_SPACE = frozenset("\t\n\r\x0b\x0c")
_WHITESPACE = re.compile(r"\s+")


def _strip_invisible(text: str) -> tuple[str, int]:
    kept: list[str] = []
    removed = 0
    for char in text:
        if char in _KEEP_AS_SPACE:
            kept.append(" ")
        elif unicodedata.category(char) in _STRIP_CATEGORIES or ord(char) in _INVISIBLE:
            removed += 1
        else:
            kept.append(char)
    return "".join(kept), removed


_ASCII_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
#: What the general ASCII path would change besides the ends: a control character, or two spaces.
_ASCII_WORK = re.compile(r"[\x00-\x1f\x7f]|  ")


def sanitize(text: str) -> tuple[str, int]:
    """NFKC, remove invisible characters, collapse whitespace.

    Returns the clean text and how many characters were removed. Idempotent: NFKC can produce
    characters that must be removed and removal can make NFKC compose further, so both are
    applied until nothing changes.
    """
    if text.isascii():
        # NFKC is the identity on ASCII, and the only invisible ASCII characters are controls.
        if not _ASCII_WORK.search(text):
            # The common case, speech: no control character and no run of whitespace to collapse
            # (every ASCII whitespace but the space is a control character).
            return text.strip(" "), 0
        cleaned, removed = _ASCII_CONTROL.subn("", text)
        return _WHITESPACE.sub(" ", cleaned).strip(), removed
    removed_total = 0
    for _ in range(4):
        normal = unicodedata.normalize("NFKC", text)
        cleaned, removed = _strip_invisible(normal)
        removed_total += removed
        cleaned = _WHITESPACE.sub(" ", cleaned).strip()
        if cleaned == text:
            break
        text = cleaned
    return text, removed_total


# --- role markers -----------------------------------------------------------------------------

#: A colon, or a letter or sign that looks like one and that NFKC leaves as it is (ratio, modifier letter
#: colons, Hebrew sof pasuq, two-dot punctuation).
_COLON = "[:\u2236\ua789\u02d0\u02f8\u05c3\u205a]"
#: What may stand between a role word and its colon: spaces (French puts one) and markdown emphasis.
_BEFORE_COLON = rf"[\s*_~]*{_COLON}"
#: The role words of chat formats, in English and in the languages of ``voice_channel.channel.languages``
#: (a model reads "Sistema:" or "Utilisateur :" as a turn label as readily as "System:").
_ROLE_WORDS = (
    r"system|assistant|user|developer|human|ai|bot|model|tool|function|instruction|instructions"
    r"|sistema|système|systeme|asistente|assistente|assistent|usuario|usuário|utilisateur|benutzer|nutzer"
    r"|desarrollador|desenvolvedor|développeur|developpeur|entwickler|modelo|modèle|modele|modell"
    r"|herramienta|ferramenta|outil|werkzeug|instrucción|instruccion|instrucciones|instrução|instrucao"
    r"|instruções|instrucoes|anweisung|anweisungen|humano|humain|mensch"
)
_MARKERS: tuple[tuple[str, re.Pattern[str], Any], ...] = (
    # Chat-template special tokens: <|im_start|>, <|endoftext|>, <|eot_id|> ...
    (
        "chat_token",
        re.compile(r"<\|\s*([^|<>]{0,40}?)\s*\|>"),
        lambda m: f"({m.group(1).replace('_', ' ').strip() or 'token'})",
    ),
    ("chat_token", re.compile(r"</?s>|\|>|<\|"), lambda m: " "),
    ("llama_marker", re.compile(r"\[\s*/?\s*INST\s*\]", re.IGNORECASE), lambda m: "(inst)"),
    ("llama_marker", re.compile(r"<<\s*/?\s*SYS\s*>>", re.IGNORECASE), lambda m: "(sys)"),
    (
        "role_tag",
        re.compile(rf"</?\s*({_ROLE_WORDS}|prompt|context|im_start|im_end)\b[^<>]{{0,80}}>", re.IGNORECASE),
        lambda m: f"({m.group(1).lower()})",
    ),
    (
        "heading_marker",
        re.compile(rf"#{{1,6}}\s*({_ROLE_WORDS}|response|input|context)\b", re.IGNORECASE),
        lambda m: f"({m.group(1).lower()})",
    ),
    (
        "role_prefix",
        # Wherever the word starts (after a space, a quote, a dash, markdown emphasis...), and with emphasis
        # or spaces before the colon ("**System:**", "*system*:", "“System:").
        re.compile(rf"(?<![^\W_])({_ROLE_WORDS}){_BEFORE_COLON}", re.IGNORECASE),
        lambda m: f"{m.group(1)} -",
    ),
    # Any other tag-like markup (HTML, SSML, XML, comments): speech recognition never produces it.
    (
        "markup_tag",
        re.compile(r"<(/?)((?:[^\W\d_]|[!?])[\w:.-]{0,40})[^<>]{0,200}>"),
        lambda m: "(comment)" if m.group(2).startswith("!--") else f"({m.group(2).lstrip('!?').lower() or 'tag'})",
    ),
    ("angle_quotes", re.compile(r"<<|>>"), lambda m: " "),
    ("code_fence", re.compile(r"```+|~~~+"), lambda m: " "),
    ("braces", re.compile(r"[{}]"), lambda m: "(" if m.group(0) == "{" else ")"),
    ("command_prefix", re.compile(r"^\s*[/!\\]+(?=\w)"), lambda m: ""),
)

# Look-alike letters of other scripts: see voice_channel.channel.confusables. Each pattern takes a whole
# word, possessively, and the callbacks skip ASCII words: a pattern that looked for the non-ASCII letter
# inside the word (``\w*[^\x00-\x7f]\w*``) backtracked cubically on a long run of letters without spaces
# (CJK text), holding the event loop for seconds.
_NON_ASCII_WORD_BEFORE_COLON = re.compile(rf"(?<![^\W_])([^\W_]++)({_BEFORE_COLON})")
_NON_ASCII_TAG = re.compile(r"<\s*/?\s*(\w++)[^<>]{0,200}>")


def _fold(word: str) -> str:
    """``word`` with look-alike letters folded to Latin and accents removed ("ꜱýstem" is "system" to a reader)."""
    decomposed = unicodedata.normalize("NFD", skeleton(word))
    return "".join(char for char in decomposed if not unicodedata.combining(char))


#: The role words as written (the patterns above catch them) and folded (what a disguised one reads as).
_ROLE_LITERALS = frozenset(_ROLE_WORDS.split("|"))
_ROLE_SET = frozenset(_fold(word) for word in _ROLE_LITERALS)
#: A markdown heading ("### Ѕystem") whose word has a look-alike letter; the words of ``heading_marker``.
_NON_ASCII_HEADING = re.compile(r"#{1,6}\s*(\w++)")
_HEADING_SET = _ROLE_SET | {"response", "input", "context"}


def _defuse_homoglyphs(text: str) -> tuple[str, int]:
    """Defuse role markers spelled with look-alike letters of other scripts; other words are untouched."""
    count = 0

    def prefix(match: re.Match[str]) -> str:
        nonlocal count
        word = match.group(1)
        if not word.isascii() and word.casefold() not in _ROLE_LITERALS and _fold(word) in _ROLE_SET:
            count += 1
            return f"{word} -"
        return match.group(0)

    def tag(match: re.Match[str]) -> str:
        nonlocal count
        if match.group(1).isascii():
            return match.group(0)  # an ASCII tag: the markup patterns defuse it
        count += 1
        return f"({skeleton(match.group(1))})"

    def heading(match: re.Match[str]) -> str:
        nonlocal count
        word = match.group(1)
        if not word.isascii() and word.casefold() not in _ROLE_LITERALS and _fold(word) in _HEADING_SET:
            word = _fold(word)
            count += 1
            return f"({word})"
        return match.group(0)

    text = _NON_ASCII_WORD_BEFORE_COLON.sub(prefix, text)
    text = _NON_ASCII_TAG.sub(tag, text)
    text = _NON_ASCII_HEADING.sub(heading, text)
    return text, count


#: Patterns a runtime could read as structure; none of them may survive :func:`defuse_markers`.
LIVE_MARKERS = re.compile(
    rf"<\|.*?\|>|\[/?INST\]|<</?SYS>>|</?(?:[^\W\d_]|[!?])[^<>]*>|</?\s*({_ROLE_WORDS})\b[^<>]*>|^\s*[/!\\]\w"
    rf"|(?<![^\W_])({_ROLE_WORDS}){_BEFORE_COLON}|#{{1,6}}\s*({_ROLE_WORDS})\b|[{{}}]|<<|>>|```|~~~",
    re.IGNORECASE,
)


def has_live_marker(text: str) -> bool:
    """Whether ``text`` still holds something a runtime could read as structure (used by tests)."""
    return bool(LIVE_MARKERS.search(text) or LIVE_MARKERS.search(text.translate(CONFUSABLES)))


# Every marker above needs one of these characters; speech rarely has any of them.
_MARKER_CHARS = re.compile(r"[<>\[\]#:{}/!\\|`~\u2236\ua789\u02d0\u02f8\u05c3\u205a]")


def defuse_markers(text: str, boundary: str = "") -> tuple[str, frozenset[str]]:
    """Rewrite role markers and command prefixes into plain words; return the flags that fired."""
    if not _MARKER_CHARS.search(text) and not (boundary and boundary in text):
        return text, frozenset()
    flags: set[str] = set()
    # A rewrite can join fragments into a new marker ("<у" + "<|" + "s>"): repeat until stable.
    for _ in range(4):
        before = text
        if boundary and boundary in text:
            text = text.replace(boundary, " ")
            flags.add("boundary_forged")
        if not text.isascii():
            text, count = _defuse_homoglyphs(text)
            if count:
                flags.add("homoglyph_marker")
        for flag, pattern, replace in _MARKERS:
            text, count = pattern.subn(replace, text)
            if count:
                flags.add(flag)
        if text == before:
            break
    if flags:
        text = _WHITESPACE.sub(" ", text).strip()
    return text, frozenset(flags)


def new_boundary() -> str:
    """A per-conversation random marker for spotlighting (unguessable, speech-safe)."""
    return f"vc-{secrets.token_hex(6)}"


# --- caps ---------------------------------------------------------------------------------------


def cap_text(text: str, max_chars: int) -> tuple[str, bool]:
    """Cut ``text`` to at most ``max_chars`` at a word boundary."""
    if len(text) <= max_chars:
        return text, False
    cut = text.rfind(" ", 0, max_chars + 1)
    if cut <= max_chars // 2:
        cut = max_chars
    return text[:cut].rstrip(), True


# --- the transcript ---------------------------------------------------------------------------


@dataclass(slots=True)
class Utterance:
    """What the channel takes from one ``user_transcript``."""

    #: The sanitised words of the newest ``user`` item ("" if there is none).
    text: str
    intent: Intent | None
    flags: frozenset[str]
    #: The ``agent`` item just before the newest ``user`` item; ``None`` when a ``user`` item
    #: precedes it directly (nothing of the last reply was heard).
    heard_reply: str | None
    #: How many history items were skipped as malformed.
    skipped_items: int = 0
    removed_chars: int = 0


#: Caller text longer than this many times ``max_chars`` is cut before it is sanitised.
_PRE_CAP_FACTOR = 4


def clean_text(text: str, *, boundary: str, max_chars: int) -> tuple[str, frozenset[str], int]:
    """Steps 2–4 for one piece of caller text: Unicode, role markers, cap.

    Returns the clean text, the flags that fired and how many invisible characters were removed.
    """
    flags: set[str] = set()
    # Cut before the work too: NFKC can expand a character 18-fold and the rest is per character, so a
    # 1 MiB frame would otherwise cost seconds of the event loop before the cap below applied. The
    # margin leaves room for what sanitising removes.
    if len(text) > max_chars * _PRE_CAP_FACTOR:
        text = text[: max_chars * _PRE_CAP_FACTOR]
        flags.add("truncated")
    text, removed = sanitize(text)
    if removed:
        flags.add("invisible_stripped")
    text, marker_flags = defuse_markers(text, boundary)
    text, truncated = cap_text(text, max_chars)
    if truncated:
        flags.add("truncated")
    return text, frozenset(flags) | marker_flags, removed


#: Flag of a history whose newest item is the agent's: nothing new from the caller to answer.
NOTHING_NEW = "nothing_new_from_caller"


def read_transcript(
    items: Sequence[Any],
    *,
    boundary: str,
    max_chars: int,
    max_history_items: int,
    language: str = "en",
) -> Utterance:
    """Apply the trust boundary to one transcript's history (see the module docstring).

    :param language: the conversation's language; its intent phrases are matched besides English.
    """
    flags: set[str] = set()
    if len(items) > max_history_items:
        items = items[-max_history_items:]
        flags.add("history_capped")
    # One cheap pass (histories are re-sent in full every turn): count unusable items and find
    # the newest user item and the valid item before it.
    skipped = 0
    last_user: str | None = None
    heard: str | None = None
    prev_role: object = None
    prev_content: str | None = None
    for raw in items:
        if not is_history_item(raw):
            skipped += 1
            continue
        role, content = raw["role"], raw["content"]
        if role == "user":
            last_user = content
            # Only compared with the channel's own record, never passed on: not sanitised.
            heard = prev_content if prev_role == "agent" else None
        prev_role, prev_content = role, content
    if skipped:
        flags.add("malformed_items")
    if last_user is None:
        return Utterance("", None, frozenset(flags | {"no_user_text"}), None, skipped)
    if prev_role == "agent":
        # The newest item is the agent's: the caller has said nothing since, so there is nothing
        # to answer (answering the earlier user item again would repeat the last turn). The item
        # is what the caller heard of the last reply.
        return Utterance("", None, frozenset(flags | {NOTHING_NEW}), prev_content, skipped)

    text, text_flags, removed = clean_text(last_user, boundary=boundary, max_chars=max_chars)
    return Utterance(
        text=text,
        intent=match_intent(text, language),
        flags=frozenset(flags) | text_flags,
        heard_reply=heard,
        skipped_items=skipped,
        removed_chars=removed,
    )


def to_runtime_message(
    utterance: Utterance, *, conversation_id: str, event_id: int | None, boundary: str
) -> RuntimeMessage:
    """Label an utterance with its provenance; the only constructor runtimes ever see used."""
    return RuntimeMessage(
        text=utterance.text,
        conversation_id=conversation_id,
        event_id=event_id,
        boundary=boundary,
        intent=utterance.intent,
        flags=utterance.flags,
    )
