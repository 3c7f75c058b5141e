"""docs/ stays the repository's own account of its contracts: links resolve, every schema
field is explained, and nothing points at a design page outside the repository."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SCANNED = ("collapse_eval", "tests", "scripts", "bench", "docs", "README.md")


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces -> '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = path.read_text(encoding="utf-8")
    return {_slug(m.group(1)) for m in re.finditer(r"^#+ (.*)$", text, re.MULTILINE)}


def _text_files() -> Iterator[Path]:
    for name in SCANNED:
        path = ROOT / name
        files = [path] if path.is_file() else sorted(path.rglob("*"))
        for file in files:
            if file.is_file() and file.suffix in {".py", ".md", ".sh", ".json", ".yaml", ".j2"}:
                yield file


def test_docs_pointers_everywhere_resolve() -> None:
    pointers = 0
    for file in _text_files():
        for m in re.finditer(r"docs/(\w+\.md)(?:#([\w-]+))?", file.read_text(encoding="utf-8")):
            target = DOCS / m.group(1)
            assert target.is_file(), f"{file.relative_to(ROOT)}: {m.group(0)}"
            if m.group(2):
                assert m.group(2) in _anchors(target), f"{file.relative_to(ROOT)}: {m.group(0)}"
            pointers += 1
    assert pointers >= 15  # the code cites docs/ for its contracts


@pytest.mark.parametrize("page", sorted(p.name for p in DOCS.glob("*.md")) + ["../README.md"])
def test_relative_links_in_docs_resolve(page: str) -> None:
    path = (DOCS / page).resolve()
    for m in re.finditer(r"\]\(([^)#\s]*)(?:#([\w-]+))?\)", path.read_text(encoding="utf-8")):
        link, anchor = m.group(1), m.group(2)
        if link.startswith(("http://", "https://")):
            continue
        target = (path.parent / link).resolve() if link else path
        assert target.exists(), f"{page}: {m.group(0)}"
        if anchor:
            assert anchor in _anchors(target), f"{page}: {m.group(0)}"


def test_nothing_points_outside_the_repository() -> None:
    # Spelled in two halves so that this file does not match itself.
    outside = re.compile("DES" + "IGN|" + r"\.\./" + "shared")
    offenders = [
        f"{file.relative_to(ROOT)}:{n}"
        for file in _text_files()
        for n, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1)
        if outside.search(line)
    ]
    assert offenders == []


def _schema_fields(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in (node.get("properties") or {}).items():
            yield key
            yield from _schema_fields(value)
        for key in ("additionalProperties", "items"):
            yield from _schema_fields(node.get(key))
        for value in (node.get("$defs") or {}).values():
            yield from _schema_fields(value)


SCHEMAS = sorted(
    p.name.removesuffix(".schema.json")
    for p in (ROOT / "collapse_eval" / "schemas").glob("*.schema.json")
)


@pytest.mark.parametrize("schema", SCHEMAS)
def test_every_schema_field_is_explained_in_formats_md(schema: str) -> None:
    formats = (DOCS / "formats.md").read_text(encoding="utf-8")
    path = ROOT / "collapse_eval" / "schemas" / f"{schema}.schema.json"
    fields = set(_schema_fields(json.loads(path.read_text(encoding="utf-8"))))
    assert len(fields) > 10
    assert f"collapse_eval/schemas/{schema}.schema.json" in formats
    missing = sorted(f for f in fields if f"`{f}`" not in formats and f".{f}`" not in formats)
    assert missing == []
