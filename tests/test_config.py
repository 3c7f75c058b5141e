"""benchmarks.yaml: packaged suites, defaults, and errors that name file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from collapse_eval.config import (
    BenchmarkEntry,
    load_benchmarks,
    packaged_benchmarks_path,
    parse_benchmarks,
)
from collapse_eval.errors import ConfigError

STANDARD = [
    "mmlu",
    "arc_challenge",
    "arc_easy",
    "hellaswag",
    "winogrande",
    "boolq",
    "piqa",
    "gsm8k",
]


def test_packaged_suites() -> None:
    config = load_benchmarks(packaged_benchmarks_path())
    assert list(config.suites) == ["quick", "standard", "standard-offline", "zh"]
    assert config.suite().name == "quick"  # the first is the default
    assert config.suite("quick").task_names == (
        "demo_arithmetic",
        "demo_capitals",
        "demo_copy",
        "demo_sort",
    )
    assert list(config.suite("standard").task_names) == STANDARD
    assert list(config.suite("standard-offline").task_names) == [f"{t}_offline" for t in STANDARD]
    assert config.suite("zh").task_names == ("ceval-valid", "cmmlu")
    gsm8k = config.suite("standard").entries[-1]
    assert (gsm8k.metric, gsm8k.margin) == ("exact_match:strict-match", 0.03)


def test_packaged_quick_tasks_exist() -> None:
    tasks = packaged_benchmarks_path().parent / "tasks"
    names = {p.stem for p in tasks.rglob("*.yaml")}
    assert set(load_benchmarks(packaged_benchmarks_path()).suite("quick").task_names) <= names


def test_default_location_prefers_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_benchmarks(None).path == packaged_benchmarks_path()
    (tmp_path / "tasks_extra").mkdir()
    (tmp_path / "benchmarks.yaml").write_text(
        "include_paths: [tasks_extra]\nsuites:\n  mine:\n    - arc_easy\n"
        "    - {task: boolq, limit: 20, num_fewshot: 2, fewshot_seed: 7, metric: acc,\n"
        "       gen_kwargs: {max_gen_toks: 4}, apply_chat_template: true, margin: 0.01}\n"
    )
    config = load_benchmarks(None)
    assert config.path == tmp_path / "benchmarks.yaml"
    assert config.include_paths == ((tmp_path / "tasks_extra").resolve(),)
    first, second = config.suite().entries
    assert first == BenchmarkEntry(task="arc_easy")
    assert (second.limit, second.num_fewshot, second.fewshot_seed, second.metric) == (
        20,
        2,
        7,
        "acc",
    )
    assert dict(second.gen_kwargs or {}) == {"max_gen_toks": 4}
    assert second.apply_chat_template is True and second.margin == 0.01


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        (
            "suites:\n  a:\n    - {task: x, limt: 3}\n",
            r"b.yaml:3: unknown key 'limt' in an entry of suite 'a'\. Did you mean 'limit'\?",
        ),
        ("suits: {}\n", r"b.yaml:1: unknown key 'suits' .*Did you mean 'suites'\?"),
        ("suites:\n  a:\n    - {task: x, margin: 2}\n", r"b.yaml:3: field 'margin'"),
        (
            "suites:\n  a:\n    - {task: x, limit: 0}\n",
            r"b.yaml:3: field 'limit': must be an integer",
        ),
        (
            "suites:\n  a:\n    - {task: x, apply_chat_template: 'yes please'}\n",
            r"field 'apply_chat_template'",
        ),
        ("suites:\n  a:\n    - {task: x, gen_kwargs: [1]}\n", r"field 'gen_kwargs'"),
        (
            "suites:\n  a:\n    - x\n    - {task: x}\n",
            r"b.yaml:4: field 'task': task 'x' appears twice",
        ),
        ("suites:\n  a:\n    - {limit: 3}\n", r"b.yaml:3: field 'task'"),
        ("suites:\n  a: []\n", r"b.yaml:2: suite 'a' must be a non-empty list"),
        ("suites: {}\n", r"'suites' is empty"),
        ("include_paths: [nope]\nsuites: {a: [x]}\n", r"b.yaml:1: field 'include_paths'.*nope"),
        ("suites: [1\n", r"b.yaml:\d+: invalid YAML"),
        ("", r"the file is empty"),
    ],
)
def test_errors_name_file_line_and_key(tmp_path: Path, text: str, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern) as err:
        parse_benchmarks(text, tmp_path / "b.yaml")
    assert err.value.exit_code == 2


def test_unknown_suite_and_missing_file(tmp_path: Path) -> None:
    config = load_benchmarks(packaged_benchmarks_path())
    with pytest.raises(ConfigError, match=r"no suite named 'standrd'\. Did you mean 'standard'\?"):
        config.suite("standrd")
    with pytest.raises(ConfigError, match="file not found"):
        load_benchmarks(tmp_path / "absent.yaml")
