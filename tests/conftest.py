"""Shared fixtures. Nothing here may reach a network: hubs are forced offline."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-init ~100k-parameter Llama checkpoint, built once per test session."""
    from collapse_eval.demo.tinymodel import init_tiny_llama

    return init_tiny_llama(tmp_path_factory.mktemp("tiny") / "ckpt", seed=0)


def write_run(path: Path, model: str, rows: Iterable[dict], tasks: dict | None = None) -> Path:
    """Write a run directory from plain dicts (records default to the domain suite)."""
    path.mkdir(parents=True, exist_ok=True)
    manifest = {"schema_version": 1, "model": model, "tasks": tasks or {}}
    (path / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    with (path / "records.jsonl").open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps({"schema_version": 1, **row}) + "\n")
    return path
