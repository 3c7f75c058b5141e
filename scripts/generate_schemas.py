"""Regenerate the JSON Schemas of the typed file formats from their msgspec models.

python scripts/generate_schemas.py           # rewrite collapse_eval/schemas/*.schema.json
python scripts/generate_schemas.py --check   # exit 1 if a committed schema is out of date
"""

from __future__ import annotations

import sys

from collapse_eval.schemas import generate

if __name__ == "__main__":
    sys.exit(generate.main(sys.argv[1:]))
