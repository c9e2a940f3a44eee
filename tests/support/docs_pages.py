"""The documentation site's pages (docs/, listed in mkdocs.yml's `nav`), for the tests that
check what a page says against the code: the settings table, the Redis keys without a TTL,
the `params` examples."""

from __future__ import annotations

from typing import Any

import yaml

from tests.support.paths import ROOT

DOCS = ROOT / "docs"


def nav_pages() -> list[str]:
    """Every page mkdocs.yml's `nav` lists, as paths under docs/, in order."""

    def walk(entries: list[Any]) -> list[str]:
        pages: list[str] = []
        for entry in entries:
            value = next(iter(entry.values())) if isinstance(entry, dict) else entry
            pages.extend(walk(value) if isinstance(value, list) else [value])
        return pages

    return walk(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"])


def page(name: str) -> str:
    return (DOCS / name).read_text()


def headings(text: str) -> list[str]:
    """The headings of a Markdown text (any level, without the `#`s), code blocks skipped."""
    found, in_code = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and line.startswith("#"):
            found.append(line.lstrip("#").strip())
    return found


def section(name: str, heading: str) -> str:
    """What page `name` says under `heading` (its whole line, `## Title`), up to the next heading."""
    return ("\n" + page(name)).split(f"\n{heading}\n", 1)[1].split("\n#", 1)[0]
