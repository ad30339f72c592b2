"""README.md is also the long description on PyPI and crates.io, where a
relative link (``docs/spec.md``) resolves against the registry's own site
and breaks. Every link in it is absolute (a repository URL) or an in-page
anchor; the repository URLs name files and headings that exist in this tree.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
REPO = "https://github.com/extensibletype/extensibletype/"

pytestmark = pytest.mark.skipif(not README.exists(), reason="README.md not in this tree")

# [text](target), ![alt](target), [ref]: target, href="..." / src="..."
INLINE = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFDEF = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)
HTML = re.compile(r"\b(?:href|src)\s*=\s*[\"']([^\"']+)[\"']", re.I)


def links(text):
    # Code spans and fenced blocks are not links.
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    text = re.sub(r"`[^`\n]*`", "``", text)
    return [m.group(1) for rx in (INLINE, REFDEF, HTML) for m in rx.finditer(text)]


def github_slug(heading):
    """GitHub's anchor for a Markdown heading."""
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def anchors(path):
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    return {github_slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.M)}


def test_readme_has_no_relative_link():
    found = links(README.read_text(encoding="utf-8"))
    assert found, "no link found: the pattern is broken"
    relative = [t for t in found if not re.match(r"(https?://|mailto:|#)", t)]
    assert not relative, f"relative links in README.md (broken on PyPI/crates.io): {relative}"


def test_readme_repository_links_name_existing_files_and_headings():
    checked = 0
    for target in links(README.read_text(encoding="utf-8")):
        if not target.startswith(REPO):
            continue
        m = re.match(r"(?:blob|tree)/main/([^#?]+)(?:#(.+))?$", target[len(REPO):])
        assert m, f"{target}: expected {REPO}blob/main/PATH[#anchor]"
        path = ROOT / m.group(1)
        assert path.exists(), f"{target}: {m.group(1)} does not exist in the tree"
        if m.group(2):
            assert m.group(2) in anchors(path), f"{target}: no heading with anchor #{m.group(2)} in {m.group(1)}"
        checked += 1
    assert checked, "no repository link checked"


def test_in_page_anchors_exist():
    text = README.read_text(encoding="utf-8")
    own = anchors(README)
    missing = [t for t in links(text) if t.startswith("#") and t[1:] not in own]
    assert not missing, f"in-page anchors without a heading: {missing}"
