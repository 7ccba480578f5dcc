"""The README as a newcomer reads it: its links lead somewhere, and the files it names are in the repository."""

from __future__ import annotations

import re

from processes import ROOT

README = (ROOT / "README.md").read_text()


def anchors(markdown: str) -> set[str]:
    """GitHub's anchors of the headings: lower case, punctuation dropped, spaces to hyphens, repeats numbered."""
    seen: dict[str, int] = {}
    found = set()
    text = re.sub(r"```.*?```", "", markdown, flags=re.DOTALL)
    for heading in re.findall(r"^#{1,6} +(.+?) *$", text, flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.replace("`", "").lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def test_every_link_inside_the_readme_has_its_heading():
    targets = set(re.findall(r"\]\(#([^)]+)\)", README))
    assert targets, "the README links to its own sections"
    assert targets - anchors(README) == set()


def test_every_relative_link_and_named_markdown_file_exists():
    links = {link for link in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", README)}
    named = set(re.findall(r"`([\w./-]+\.md)`", README))
    missing = sorted(path for path in links | named if not (ROOT / path).exists())
    assert missing == []


def test_prerequisites_come_first():
    head = README[: README.index("## What it is")]
    assert "Python ≥ 3.11" in head and "Node.js" in head and "npm" in head and "make test` installs" in head
