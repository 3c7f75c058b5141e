"""Typed errors keep their class, message, fields and exit code across a process boundary."""

from __future__ import annotations

import pickle
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import pytest

from collapse_eval.errors import (
    EXIT_RUNTIME,
    EXIT_USAGE,
    InputError,
    InputErrors,
    MissingDependencyError,
    StorageError,
)


def _raise_input_error() -> None:
    raise InputError("data.jsonl", "no 'id'", line=3, field="id", hint="add one")


def test_typed_errors_survive_pickling() -> None:
    one = InputError("data.jsonl", "no 'id'", line=3, field="id")
    cases = [
        one,
        InputErrors("data.jsonl", [one]),
        StorageError("cannot write x: disk full", reason="no space left on the device"),
        MissingDependencyError("vLLM", "pip install vllm"),
    ]
    for error in cases:
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error)
        assert str(copy) == str(error) and copy.exit_code == error.exit_code
        assert copy.__dict__.keys() == error.__dict__.keys()
    copy = pickle.loads(pickle.dumps(one))
    assert (copy.path, copy.line, copy.field, copy.message) == ("data.jsonl", 3, "id", "no 'id'")
    storage = pickle.loads(pickle.dumps(cases[2]))
    assert storage.reason == "no space left on the device" and storage.exit_code == EXIT_RUNTIME


def test_an_input_error_in_a_worker_process_reaches_the_parent_as_itself() -> None:
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        future = pool.submit(_raise_input_error)
        with pytest.raises(InputError) as caught:
            future.result()
    assert str(caught.value) == "data.jsonl:3: field 'id': no 'id' (add one)"
    assert caught.value.exit_code == EXIT_USAGE
