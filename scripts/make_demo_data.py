"""Regenerate the demo world's committed data files (bit-identical; seeded).

python scripts/make_demo_data.py           # write collapse_eval/tasks/demo*/...
python scripts/make_demo_data.py --check   # exit 1 if a committed file differs
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from collapse_eval.demo import data, dialogues


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="compare with the committed files instead of writing them",
    )
    args = parser.parse_args(argv)
    if not args.check:
        for path in [*data.write_all(), dialogues.write_dialogues()]:
            print(f"wrote {path}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        stale = [
            fresh
            for fresh in [*data.write_all(Path(tmp)), dialogues.write_dialogues(Path(tmp))]
            if not (data.TASKS_DIR / fresh.relative_to(tmp)).is_file()
            or (data.TASKS_DIR / fresh.relative_to(tmp)).read_bytes() != fresh.read_bytes()
        ]
        for path in stale:
            print(f"differs: {path.relative_to(tmp)}", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
