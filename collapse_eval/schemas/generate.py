"""Generate the JSON Schemas of the typed file formats from their msgspec models.

    python scripts/generate_schemas.py           # rewrite the schema files
    python scripts/generate_schemas.py --check   # exit 1 if a file is out of date

(`main` returns the exit status; the script exits with it: library code never exits.)

The tests run the check: a model changed without its schema fails CI. summary.json's and
manifest.json's schemas are still kept by hand (their serializers are not models yet).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import msgspec

from collapse_eval.formats.build import BuildReport
from collapse_eval.formats.contamination import ContaminationReport
from collapse_eval.formats.correlation import CorrelationReport
from collapse_eval.formats.quality import QualityReport
from collapse_eval.formats.record import RecordLine

__all__ = ["GENERATED", "generated_text", "main"]

HERE = Path(__file__).resolve().parent
DRAFT = "https://json-schema.org/draft/2020-12/schema"
# file stem -> (model, $id, title)
GENERATED: dict[str, tuple[type[msgspec.Struct], str, str]] = {
    "record": (
        RecordLine,
        "collapse-eval/record.schema.json",
        "collapse-eval item record (one line of records.jsonl)",
    ),
    "quality": (
        QualityReport,
        "https://collapse-eval.dev/schemas/quality.schema.json",
        "collapse-eval quality.json (schema_version 1)",
    ),
    "contamination": (
        ContaminationReport,
        "https://collapse-eval.dev/schemas/contamination.schema.json",
        "collapse-eval contamination.json (schema_version 1)",
    ),
    "build": (
        BuildReport,
        "https://collapse-eval.dev/schemas/build.schema.json",
        "collapse-eval build.json (schema_version 1)",
    ),
    "correlation": (
        CorrelationReport,
        "https://collapse-eval.dev/schemas/correlation.schema.json",
        "collapse-eval correlation.json (schema_version 1)",
    ),
}


def _one_line(node: Any) -> Any:
    """Descriptions (docstrings) on one line: msgspec versions indent them differently,
    and the committed files must not depend on which one generated them."""
    if isinstance(node, dict):
        return {
            k: " ".join(v.split()) if k == "description" and isinstance(v, str) else _one_line(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_one_line(v) for v in node]
    return node


def schema_of(model: type[msgspec.Struct], schema_id: str, title: str) -> dict[str, Any]:
    """The model's schema as one document: the model itself at the top, what it uses in
    ``$defs``."""
    (_,), defs = msgspec.json.schema_components([model], ref_template="#/$defs/{name}")
    defs = _one_line(defs)
    root = dict(defs.pop(model.__name__))
    root.pop("title", None)
    out: dict[str, Any] = {"$schema": DRAFT, "$id": schema_id, "title": title, **root}
    if defs:
        out["$defs"] = dict(sorted(defs.items()))
    return out


def generated_text(stem: str) -> str:
    text = json.dumps(schema_of(*GENERATED[stem]), indent=2, ensure_ascii=False)
    return text + "\n"


def main(argv: list[str]) -> int:
    check = argv == ["--check"]
    if argv and not check:
        print("usage: python scripts/generate_schemas.py [--check]", file=sys.stderr)
        return 2
    stale = []
    for stem in GENERATED:
        path = HERE / f"{stem}.schema.json"
        text = generated_text(stem)
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            continue
        stale.append(path)
        if not check:
            path.write_text(text, encoding="utf-8")
    verb = "out of date (run python scripts/generate_schemas.py)" if check else "written"
    for path in stale:
        print(f"{path.name}: {verb}")
    return 1 if check and stale else 0
