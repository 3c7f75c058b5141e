"""What a new user hit on a real model (issue 19): checks that come before any model loads,
and the command line's smaller promises."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from collapse_eval.cli import main
from tests.conftest import write_run
from tests.progresslog import Log
from tests.testdata import rent_domain_file


def _compare_hf(tiny_model: Path, tmp_path: Path, *candidates: str) -> list[str]:
    return [
        "compare",
        str(tiny_model),
        *candidates,
        "--domain",
        str(rent_domain_file(tmp_path / "d.jsonl", 8, "d")),
        "--no-general",
        "--engine",
        "hf",
        "--no-cache",
        "--out",
        str(tmp_path / "cmp"),
        "-q",
    ]


def test_a_missing_candidate_is_refused_before_the_base_is_evaluated(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = _compare_hf(tiny_model, tmp_path, str(tiny_model), str(tmp_path / "nope"))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"error: {tmp_path / 'nope'}: checkpoint directory not found" in err
    assert not (tmp_path / "cmp" / "runs").exists()  # the base was not evaluated first


def test_an_unfinished_run_directory_as_candidate_is_refused_first(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = write_run(tmp_path / "half", "m", [])
    manifest = json.loads((run / "manifest.json").read_text())
    (run / "manifest.json").write_text(json.dumps({**manifest, "complete": False}))
    assert main(_compare_hf(tiny_model, tmp_path, str(run))) == 2
    assert "this run is incomplete (manifest.json says complete: false" in capsys.readouterr().err
    assert not (tmp_path / "cmp" / "runs").exists()


def test_a_bad_engine_argument_is_refused_before_any_model_loads(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = _compare_hf(tiny_model, tmp_path, str(tiny_model))
    assert main([*argv, "--engine-arg", "dtyp=float32"]) == 2
    err = capsys.readouterr().err
    assert "dtyp" in err and "dtype" in err  # the did-you-mean
    assert not (tmp_path / "cmp" / "runs").exists()


# ------------------------------------------------------------------ --domain-limit


def _clustered(path: Path) -> Path:
    """12 items: dialogues a (4 items), b (3), c (3), and two items without a cluster."""
    sizes = {"a": 4, "b": 3, "c": 3}
    rows = [{"id": f"{c}{k}", "cluster": c} for c, size in sizes.items() for k in range(size)] + [
        {"id": "lone1"},
        {"id": "lone2"},
    ]
    lines = []
    for row in rows:
        item = {
            "id": row["id"],
            "task_type": "intent",
            "output_format": "label",
            "prompt": f"Q {row['id']}: intent?",
            "reference": "rent",
        }
        if "cluster" in row:
            item["metadata"] = {"cluster": row["cluster"]}
        lines.append(json.dumps(item))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _run_limited(tmp_path: Path, limit: int | None, name: str) -> Any:
    from collapse_eval.engines.fake import FakeEngine
    from collapse_eval.runner import RunSpec, run_model

    spec = RunSpec(
        model="m",
        domain_files=(_clustered(tmp_path / "d.jsonl"),),
        run_general=False,
        domain_limit=limit,
        use_cache=False,
    )
    return run_model(spec, tmp_path / name, engine_factory=lambda s: FakeEngine(name="m"))


def _clusters_of(ids: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item_id in ids:
        key = item_id[:-1] if item_id[0] in "abc" else item_id
        counts[key] = counts.get(key, 0) + 1
    return counts


def test_domain_limit_takes_whole_clusters_the_same_for_every_run(tmp_path: Path) -> None:
    run = _run_limited(tmp_path, 6, "r1")
    ids = [r.item_id for r in run.records]
    assert 1 <= len(ids) <= 6
    full = {"a": 4, "b": 3, "c": 3}
    for key, n in _clusters_of(ids).items():
        assert n == full.get(key, 1)  # never part of a dialogue
    again = _run_limited(tmp_path, 6, "r2")
    assert [r.item_id for r in again.records] == ids  # base and tuned get the same items
    assert run.manifest.tasks["d"].n == len(ids)
    assert run.manifest.tasks["d"].spec["limit"] == 6
    everything = _run_limited(tmp_path, None, "r3")
    assert len(everything.records) == 12
    assert "limit" not in everything.manifest.tasks["d"].spec  # earlier specs unchanged


def test_domain_limit_below_every_cluster_is_refused(tmp_path: Path) -> None:
    from collapse_eval.errors import UsageError

    path = tmp_path / "only_clusters.jsonl"
    lines = _clustered(tmp_path / "d.jsonl").read_text().splitlines()[:10]  # a, b, c
    path.write_text("\n".join(lines) + "\n")
    from collapse_eval.domain.dataset import load_domain_set
    from collapse_eval.runner import whole_clusters

    with pytest.raises(UsageError, match=r"the smallest has 3.*--domain-limit 3"):
        whole_clusters(load_domain_set(path), 2, path)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--domain-limit", "5"], "--domain-limit limits the --domain files, and none is given"),
        (
            ["--domain-limt", "5"],
            "No such option '--domain-limt'. (Did you mean one of: '--domain', '--domain-limit'",
        ),
        (["--domain-limit", "0"], "0 is not in the range x>=1"),
    ],
)
def test_domain_limit_mistakes_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    code = main(["run", "some-model", "--no-general", "--out", str(tmp_path / "r"), *argv])
    assert code == 2
    assert expected in capsys.readouterr().err


# ------------------------------------------------------------------ smaller things


class _Manager:
    """What check_task_names reads of lm-eval's TaskManager: the known names."""

    def __init__(self, names: list[str]) -> None:
        self.all_tasks = names


@pytest.mark.parametrize("offline_dir_indexed", [False, True])
def test_the_task_hint_does_not_depend_on_what_the_cache_answered(
    offline_dir_indexed: bool,
) -> None:
    from collapse_eval.errors import ConfigError
    from collapse_eval.general import check_task_names

    # Without an offline name among the checked ones, the offline directory is not indexed.
    names = ["boolq", "boolqa_bn", "arc_easy", "boolq_nl"]
    if offline_dir_indexed:
        names += ["boolq_offline", "arc_easy_offline"]
    with pytest.raises(ConfigError, match=r"'boolq_ofline'\. Did you mean: boolq_offline,"):
        check_task_names(_Manager(names), ["boolq_ofline"])


def test_lm_evals_default_metric_notices_stay_out_of_the_log(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import logging

    import collapse_eval.general  # noqa: F401  (installs the filter)

    monkeypatch.delenv("COLLAPSE_EVAL_DEBUG", raising=False)
    task_log = logging.getLogger("lm_eval.api.task")
    with caplog.at_level(logging.WARNING):
        task_log.warning(
            "[Task: boolq] metric acc is defined, but aggregation is not. using default "
            "aggregation=mean"
        )
        task_log.warning(
            "[Task: boolq] metric acc is defined, but higher_is_better is not. using "
            "default higher_is_better=True"
        )
        task_log.warning("[Task: boolq] a warning that matters")
    assert [r.getMessage() for r in caplog.records] == ["[Task: boolq] a warning that matters"]


def test_report_takes_the_summary_json_path_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.conftest import write_run_pair

    base, tuned = write_run_pair(tmp_path, tuned_score=1.0)
    out = tmp_path / "outB"
    assert main(["compare", str(base), str(tuned), "--out", str(out), "-q"]) == 0
    (out / "report.html").unlink()
    capsys.readouterr()
    assert main(["report", str(out / "summary.json")]) == 0
    assert f"wrote {out / 'report.html'}" in capsys.readouterr().out
    assert (out / "report.html").is_file()


def test_the_loading_line_does_not_pass_a_first_batch_off_as_the_total(
    tiny_model: Path, tmp_path: Path
) -> None:
    from collapse_eval.runner import RunSpec, run_model

    spec = RunSpec(
        model=str(tiny_model),
        domain_files=(rent_domain_file(tmp_path / "d.jsonl", 100, "d"),),
        engine="hf",
        engine_args={"batch_size": "8"},
        run_general=False,
        cache_dir=tmp_path / "cache",
    )
    log = Log()
    run_model(spec, tmp_path / "run", progress=log)
    loading = [line for line in log.lines if line.startswith("loading")]
    assert loading == [
        f"loading {tiny_model} (answers not in the cache: 64 in the first batch; the "
        "total computed is logged at the end)"
    ]
    assert log.lines[-1] == "run: 100 requests, 0 from cache, model loaded, 100 computed"


def _bf16_copy(tiny_model: Path, tmp_path: Path) -> Path:
    """The tiny checkpoint with config.json saying bfloat16 (as a bf16 release does)."""
    import shutil

    copy = tmp_path / "bf16"
    shutil.copytree(tiny_model, copy)
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "dtype": "bfloat16"}))
    return copy


def test_a_bf16_checkpoint_computed_in_float32_is_said_so(tiny_model: Path, tmp_path: Path) -> None:
    import warnings

    from collapse_eval.engines.registry import make_engine
    from collapse_eval.errors import CollapseEvalWarning

    copy = _bf16_copy(tiny_model, tmp_path)
    engine = make_engine("hf", str(copy), {})
    with pytest.warns(CollapseEvalWarning, match=r"stored in bfloat16 and is computed in float32"):
        engine.loglikelihood([("a", " b")])
    assert engine.engine_args["dtype"] == "float32"  # the run settings of earlier runs hold
    explicit = make_engine("hf", str(copy), {"dtype": "float32"})
    with warnings.catch_warnings():
        warnings.simplefilter("error", CollapseEvalWarning)
        explicit.loglikelihood([("a", " b")])  # asked for: nothing to say


def _boolq_records(correct: int, n: int = 100) -> list[Any]:
    """BoolQ-like records: 70 % of references 'yes'; the first ``correct`` items right."""
    from collapse_eval.records import ItemRecord

    rows = []
    for i in range(n):
        reference = "yes" if i % 10 < 7 else "no"
        right = i < correct
        other = "no" if reference == "yes" else "yes"
        rows.append(
            ItemRecord(
                suite="general",
                task="boolq",
                item_id=str(i),
                metric="acc",
                score=float(right),
                prediction=reference if right else other,
                reference=reference,
            )
        )
    return rows


def test_a_multiple_choice_score_below_chance_is_flagged() -> None:
    from collapse_eval.runner import below_chance

    said = below_chance("boolq", _boolq_records(correct=32), "acc")
    assert said == (
        "boolq scored 32% (acc, n = 100), below chance for its 2 labels (50%); it answered "
        "'no' on 56 of 100 items, and always answering 'yes' would score 70%. Below chance "
        "usually means a prompt or label mismatch (the task's YAML, its few-shot examples or "
        "a chat template), or a model that leans to one answer whatever the question"
    )
    assert below_chance("boolq", _boolq_records(correct=45), "acc") is None  # within noise
    assert below_chance("boolq", _boolq_records(correct=58), "acc") is None  # a weak model
    # Choices that differ per item (ARC): k is unknown, nothing is said.
    arc = [dataclasses.replace(r, reference=f"answer {i}") for i, r in enumerate(_boolq_records(0))]
    assert below_chance("arc_easy", arc, "acc") is None


def test_report_on_a_missing_summary_json_names_that_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "outB" / "summary.json"
    assert main(["report", str(missing)]) == 2
    err = capsys.readouterr().err
    assert f"error: {missing}: file not found" in err
    assert "summary.json/summary.json" not in err
