"""Homoglyph folding: letters of other scripts that look like Latin ones, mapped to those Latin letters.

A subset of Unicode's confusables (UTS #39) for Cyrillic, Greek and the Latin small capitals
("ꜱystem", which NFKC leaves as it is). Used in two places that must
agree: the trust boundary (:mod:`voice_channel.channel.untrusted`: "sуstem:" with a Cyrillic у reads
as a role marker to a human and to many models) and the confirmation parser
(:mod:`voice_channel.channel.confirmations`: "nо" with a Cyrillic о still says no, and "yеs" with a
Cyrillic е never says yes).
"""

from __future__ import annotations

__all__ = ["CONFUSABLES", "has_confusables", "skeleton"]

CONFUSABLES = str.maketrans(
    "аеорсухіјѕԁӏԛԝ"  # Cyrillic lower
    "АВЕКМНОРСТХУІЈЅ"  # Cyrillic upper
    "αβεικνορτυχ"  # Greek lower
    "ΑΒΕΗΙΚΜΝΟΡΤΥΧΖ"  # Greek upper
    "ᴀʙᴄᴅᴇꜰɢʜɪᴊᴋʟᴍɴᴏᴘꞯʀꜱᴛᴜᴠᴡʏᴢ",  # Latin small capitals (IPA letters: never in a transcript)
    "aeopcyxijsdlqwABEKMHOPCTXYIJSabeiknoptuxABEHIKMNOPTYXZabcdefghijklmnopqrstuvwyz",
)
_SOURCES = frozenset(chr(code) for code in CONFUSABLES)


def skeleton(text: str) -> str:
    """``text`` with look-alike letters folded to Latin, case-folded."""
    return text.translate(CONFUSABLES).casefold()


def has_confusables(text: str) -> bool:
    """Whether ``text`` holds a letter that :func:`skeleton` would fold."""
    return not text.isascii() and any(char in _SOURCES for char in text)
