"""Every relative link of README.md names a file that exists and, with ``#anchor``, a heading
of that file (``mkdocs build --strict`` checks the docs' own links, not the README's)."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _slug(heading: str) -> str:
    """GitHub's and MkDocs' anchor of a heading: lower case, punctuation dropped, spaces
    to hyphens."""
    text = re.sub(r"[^\w\s-]", "", heading.strip().lower())
    return re.sub(r"\s", "-", text)


def _anchors(path: Path) -> set[str]:
    in_code, out = False, set()
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and line.startswith("#"):
            out.add(_slug(line.lstrip("#")))
    return out


def _links():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return [m for m in LINK.findall(text) if not re.match(r"[a-z]+:", m)]


def test_the_slug_by_hand():
    assert _slug("When does PGPO help? A first map (2026-12-06)") == \
        "when-does-pgpo-help-a-first-map-2026-12-06"


def test_readme_has_relative_links():
    assert len(_links()) >= 10


@pytest.mark.parametrize("link", _links())
def test_readme_link_resolves(link):
    path, _, anchor = link.partition("#")
    target = ROOT / path if path else ROOT / "README.md"
    assert target.exists(), f"README.md links to {path!r}, which does not exist"
    if anchor:
        assert anchor in _anchors(target), f"{target.name} has no heading #{anchor}"
