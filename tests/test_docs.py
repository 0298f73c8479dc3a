"""README.md and docs/ stay navigable: every relative link and #anchor resolves, and the README stays short.

Anchors follow GitHub's rendering (lower case, punctuation dropped, spaces to hyphens, -1/-2 for repeats), so
a link that works here works on the repository's web page.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
README_MAX_LINES = 250

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
INLINE_LINK = re.compile(r"!?\[((?:[^\[\]]|\[[^\]]*\])*)\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s.*)?$")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # http:, https:, mailto:, …


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks (whose `#` lines and brackets are not Markdown)."""
    lines, fence = [], ""
    for line in text.splitlines():
        opening = FENCE.match(line)
        if fence:
            if opening and opening.group(1)[0] == fence[0] and len(opening.group(1)) >= len(fence):
                fence = ""
        elif opening:
            fence = opening.group(1)
        else:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its rendered text, lower case, without punctuation, spaces → hyphens."""
    text = INLINE_LINK.sub(lambda link: link.group(1), heading)
    text = CODE_SPAN.sub(lambda span: span.group(2), text).replace("*", "")
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for line in prose_lines(path.read_text()):
        if heading := HEADING.match(line):
            base = slug(heading.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(path: Path) -> list[str]:
    """Every link target in the document's prose (inline links, images, reference definitions)."""
    targets = []
    for line in prose_lines(path.read_text()):
        if definition := REFERENCE_DEFINITION.match(line):
            targets.append(definition.group(1))
            continue
        # Code spans first: `mqtt://[::1]:1883` or `a[0](x)` inside backticks is not a link,
        # but the backticked text of [`edged watch`](…) still leaves the link around it intact.
        prose = CODE_SPAN.sub(lambda span: "x" * len(span.group(0)), line)
        targets.extend(link.group(2) for link in INLINE_LINK.finditer(prose))
    return targets


def broken_links(path: Path) -> list[str]:
    problems = []
    for target in links(path):
        if EXTERNAL.match(target):
            continue
        file_part, _, anchor = target.partition("#")
        destination = (path.parent / unquote(file_part)).resolve() if file_part else path
        where = f"{path.relative_to(REPO)}: ({target})"
        if not destination.is_relative_to(REPO):
            problems.append(f"{where} points outside the repository")
        elif not destination.exists():
            problems.append(f"{where}: {destination.relative_to(REPO)} does not exist")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            problems.append(f"{where}: no heading #{anchor} in {destination.relative_to(REPO)}")
    return problems


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_and_anchor_resolves(path: Path):
    assert links(path) or path.name != "README.md", "the README links to its docs"
    assert broken_links(path) == []


def test_readme_stays_a_five_minute_read():
    lines = len((REPO / "README.md").read_text().splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move reference material into docs/"


def test_the_checker_sees_a_broken_anchor_and_a_missing_file(tmp_path: Path, monkeypatch):
    """The checker itself: GitHub-style slugs, repeats numbered, code blocks ignored, breakage reported."""
    monkeypatch.setattr(f"{__name__}.REPO", tmp_path)
    (tmp_path / "a.md").write_text(
        "# Models: `edged models list` / `edged models fetch`\n## Notes\n## Notes\n"
        "```sh\n# not a heading\n[not](a-link.md)\n```\n"
        "[ok](#models-edged-models-list--edged-models-fetch) [ok](#notes-1) [ok](b.md#b-c)\n"
        "[gone](#not-a-heading) [missing](c.md) [out](../elsewhere.md) `[code](x.md)` [web](https://x.y/z)\n")
    (tmp_path / "b.md").write_text("## B: c\n")
    assert anchors(tmp_path / "a.md") == {"models-edged-models-list--edged-models-fetch", "notes", "notes-1"}
    assert [problem.split(": (")[1] for problem in broken_links(tmp_path / "a.md")] == [
        "#not-a-heading): no heading #not-a-heading in a.md",
        "c.md): c.md does not exist",
        "../elsewhere.md) points outside the repository",
    ]
