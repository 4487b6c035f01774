"""Repository hygiene that CI would otherwise find too late.

- every relative link in the README and ``docs/`` points at a file or folder that exists (a
  renamed test or module breaks the doc that names it), and every ``#anchor`` of a link (in the
  page or in another document) at a heading of that document, as GitHub makes its anchors;
- test module basenames are unique across the test folders: they have no ``__init__.py``, so
  pytest's default import mode refuses to collect two ``test_x.py`` (the whole run stops with a
  collection error).
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: ``[text](target)`` with a target that is not a URL, a mail address or a pure in-page anchor.
LINK = re.compile(r"\[[^\]]*\]\((?!https?://|mailto:|#)([^)\s]+)\)")
#: ``[text](target#anchor)`` or ``[text](#anchor)`` with a target that is not a URL.
ANCHORED = re.compile(r"\[[^\]]*\]\((?!https?://|mailto:)([^)\s#]*)#([^)\s]+)\)")


def _prose(document: Path) -> str:
    return re.sub(r"```.*?```", "", document.read_text(encoding="utf-8"), flags=re.DOTALL)


def relative_links(document: Path) -> list[str]:
    return [target.split("#", 1)[0] for target in LINK.findall(_prose(document))]


def anchors(document: Path) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown document: lower case, punctuation
    dropped (hyphens and underscores kept), spaces made hyphens, ``-1``, ``-2`` for repeats."""
    seen: dict[str, int] = defaultdict(int)
    found = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", _prose(document), flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug if not seen[slug] else f"{slug}-{seen[slug]}")
        seen[slug] += 1
    return found


def test_the_documents_hold_relative_links() -> None:
    # The check below passes vacuously if the pattern stops matching: make sure it matches.
    assert sum(len(relative_links(document)) for document in DOCUMENTS) >= 10


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_every_relative_link_resolves(document: Path) -> None:
    missing = [target for target in relative_links(document) if not (document.parent / target).exists()]
    assert not missing, f"{document.relative_to(ROOT)} links to missing paths: {missing}"


def test_anchors_are_the_ones_github_makes() -> None:
    page = ROOT / "docs" / "serving.md"
    assert {"the-price-range", "why-this-price"} <= anchors(page)
    assert "the-price-range" not in anchors(ROOT / "README.md")
    # the check below passes vacuously if the pattern stops matching
    assert sum(len(ANCHORED.findall(_prose(document))) for document in DOCUMENTS) >= 5


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_every_link_anchor_names_a_heading(document: Path) -> None:
    broken = []
    for target, anchor in ANCHORED.findall(_prose(document)):
        linked = (document.parent / target) if target else document
        if linked.suffix == ".md" and linked.exists() and anchor not in anchors(linked):
            broken.append(f"{target}#{anchor}")
    assert not broken, f"{document.relative_to(ROOT)} links to missing headings: {broken}"


def test_test_module_basenames_are_unique() -> None:
    by_name: dict[str, list[str]] = defaultdict(list)
    modules = {
        *(ROOT / "tests").rglob("test_*.py"),
        *(ROOT / "tests").rglob("*_test.py"),
    }  # pytest's defaults
    for module in modules:
        by_name[module.name].append(str(module.relative_to(ROOT)))
    clashes = {name: paths for name, paths in by_name.items() if len(paths) > 1}
    assert not clashes, f"rename one of each (pytest cannot collect both): {clashes}"
