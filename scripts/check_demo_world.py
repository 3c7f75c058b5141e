"""Build (or reuse) the demo world and print direct greedy accuracies of its checkpoints.

    python scripts/check_demo_world.py [--test] [--limit N] [--cache-dir DIR]

A sanity check of the world itself (transformers, no lm-eval, no statistics): both
fine-tunes should gain on the domain, ``domain-only`` should lose the general tasks and
``mixed`` should keep them.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from collapse_eval.demo.train import evaluate_checkpoint
from collapse_eval.demo.world import WorldConfig, ensure_demo_world


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--test", action="store_true", help="the small test world")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--cache-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    config = WorldConfig.test() if args.test else WorldConfig.demo()
    started = time.monotonic()
    world = ensure_demo_world(args.cache_dir, config=config, progress=print)
    print(f"world ready in {time.monotonic() - started:.0f} s")
    table = {
        name: evaluate_checkpoint(path, limit=args.limit)
        for name, path in (
            ("base", world.base),
            ("domain-only", world.domain_only),
            ("mixed", world.mixed),
        )
    }
    keys = list(table["base"])
    print(f"{'metric':32s}" + "".join(f"{name:>13s}" for name in table))
    for key in keys:
        print(f"{key:32s}" + "".join(f"{table[name][key]:13.3f}" for name in table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
