"""Repository hygiene that CI would otherwise find too late.

- every relative link in the README and ``docs/`` points at a file or folder that exists (a
  renamed test or module breaks the doc that names it);
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


def relative_links(document: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", document.read_text(encoding="utf-8"), flags=re.DOTALL)
    return [target.split("#", 1)[0] for target in LINK.findall(text)]


def test_the_documents_hold_relative_links() -> None:
    # The check below passes vacuously if the pattern stops matching: make sure it matches.
    assert sum(len(relative_links(document)) for document in DOCUMENTS) >= 10


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_every_relative_link_resolves(document: Path) -> None:
    missing = [target for target in relative_links(document) if not (document.parent / target).exists()]
    assert not missing, f"{document.relative_to(ROOT)} links to missing paths: {missing}"


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
