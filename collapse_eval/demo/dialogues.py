"""The demo's real-estate dialogues as unlabelled input for `collapse-eval data build`.

``tasks/demo/realestate_dialogues.jsonl`` holds ``{id, text}`` per line: the first training
dialogues of the demo world (none is in its test set). ``scripts/make_demo_data.py``
regenerates it bit-identically. (A module of its own: the demo world's cache key hashes
``data.py``, which this file leaves unchanged.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from collapse_eval.demo.data import TASKS_DIR, TEST_SEED, TRAIN_SEED, make_dialogues, write_jsonl

__all__ = ["DIALOGUES_FILE", "dialogue_records", "write_dialogues"]

DIALOGUES_FILE = TASKS_DIR / "demo" / "realestate_dialogues.jsonl"
N_DIALOGUES = 60


def dialogue_records(n: int = N_DIALOGUES) -> list[dict[str, Any]]:
    """The first ``n`` demo training dialogues as ``{"id", "text"}`` rows."""
    test_texts = frozenset(d.text for d in make_dialogues(90, TEST_SEED, "dlg-test"))
    dialogues = make_dialogues(n, TRAIN_SEED, "dlg-train", exclude=test_texts)
    return [{"id": d.dialogue_id, "text": d.text} for d in dialogues]


def write_dialogues(tasks_dir: Path = TASKS_DIR) -> Path:
    path = tasks_dir / "demo" / DIALOGUES_FILE.name
    write_jsonl(path, dialogue_records())
    return path
