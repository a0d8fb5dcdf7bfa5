"""The README and docs/: every relative link and image resolves, anchors included; the README stays a
front door."""

import re
from pathlib import Path

import pytest

from tests.conftest import REPO

PAGES = [REPO / "README.md", REPO / "tests" / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def anchors(page: Path) -> set[str]:
    """GitHub's anchors for a page's headings: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    headings = re.findall(r"^#+\s+(.+?)\s*$", text, re.M)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def relative_links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # code blocks hold shell, not links
    return [target for target in LINK.findall(text) if not re.match(r"[a-z]+:", target)]


def test_the_anchor_rule_is_githubs():
    page = REPO / "docs" / "performance.md"
    assert {"test-suite", "stacked-sweeps", "mixed-precision", "presets-and-lessons-wall-time"} <= anchors(page)


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO)))
def test_every_relative_link_and_image_resolves(page):
    broken = []
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists() or (anchor and resolved.suffix == ".md" and anchor not in anchors(resolved)):
            broken.append(target)
    assert broken == []


def test_every_docs_page_is_linked_from_the_index_and_every_image_is_used():
    index = relative_links(REPO / "docs" / "README.md")
    assert sorted(page.name for page in (REPO / "docs").glob("*.md") if page.name != "README.md") == sorted(
        link for link in index if link.endswith(".md") and "/" not in link
    )
    used = {(page.parent / target).resolve() for page in PAGES for target in relative_links(page)}
    unused = [image.name for image in (REPO / "docs" / "img").rglob("*.png") if image.resolve() not in used]
    assert unused == []


def test_the_readme_is_a_front_door():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    first_screen = text[:1500]
    assert "docs/img/headline.png" in first_screen
    assert text.index("make demo") < text.index("## One run")
