"""The demo world's cache key follows the data it trains on, not the source that makes it:
a comment in demo/data.py keeps the (minutes-long) world, a change to the data rebuilds it.

Each variant is a copy of the package with one edit to data.py, whose key is computed in
a fresh interpreter (the module as a user would have it after the edit).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from collapse_eval.demo.world import WorldConfig, world_key

PACKAGE = Path(__file__).resolve().parents[1] / "collapse_eval"
KEYS = (
    "from collapse_eval.demo.world import WorldConfig, world_key; "
    "print(world_key(WorldConfig.test()), world_key(WorldConfig.demo()))"
)


def _keys_after_edit(tmp: Path, old: str, new: str) -> list[str]:
    """world_key of the test and demo configs with ``old`` replaced by ``new`` (once) in
    a copy of demo/data.py."""
    shutil.copytree(PACKAGE, tmp / "collapse_eval", ignore=shutil.ignore_patterns("__pycache__"))
    source = tmp / "collapse_eval" / "demo" / "data.py"
    text = source.read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    source.write_text(text.replace(old, new), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(tmp)}
    done = subprocess.run(
        [sys.executable, "-c", KEYS], capture_output=True, text=True, env=env, cwd=tmp, check=True
    )
    return done.stdout.split()


@pytest.fixture(scope="module")
def keys_now() -> list[str]:
    return [world_key(WorldConfig.test()), world_key(WorldConfig.demo())]


def test_a_comment_in_data_py_keeps_the_world(tmp_path: Path, keys_now: list[str]) -> None:
    comment = "# Fixed seeds: the same data on every machine.\nTEST_SEED = 1001\n"
    edited = _keys_after_edit(tmp_path, "TEST_SEED = 1001\n", comment)
    assert edited == keys_now


def test_a_change_to_the_training_data_rebuilds_the_world(
    tmp_path: Path, keys_now: list[str]
) -> None:
    # Another seed for the training dialogues: other samples, same code shape.
    edited = _keys_after_edit(tmp_path, "TRAIN_SEED = 2002\n", "TRAIN_SEED = 2003\n")
    assert len(edited) == 2
    assert edited[0] != keys_now[0] and edited[1] != keys_now[1]


def test_the_key_covers_each_part_of_the_training_data(
    monkeypatch: pytest.MonkeyPatch, keys_now: list[str]
) -> None:
    """General pairs, unlabelled dialogues and the domain split each reach the key."""
    from collapse_eval.demo import data

    real_general, real_texts, real_domain = (
        data.general_train_pairs,
        data.unlabelled_dialogue_texts,
        data.domain_train_set,
    )
    edits = {
        "general_train_pairs": lambda n, seed: {
            **real_general(n, seed=seed),
            "demo_copy": [("Copy: ab", "ab")],
        },
        "unlabelled_dialogue_texts": lambda n: [*real_texts(n)[:-1], "Agent: hello"],
        "domain_train_set": lambda: real_domain()[:-1],
    }
    for name, edited in edits.items():
        with monkeypatch.context() as patch:
            patch.setattr(data, name, edited)
            assert world_key(WorldConfig.test()) != keys_now[0], name
    assert world_key(WorldConfig.test()) == keys_now[0]
