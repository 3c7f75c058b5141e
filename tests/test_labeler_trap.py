"""`data build` -> `compare`: a model compared on references it wrote itself (issue 19,
item 7). The built test items say where each reference came from (metadata)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from collapse_eval.cli import main
from collapse_eval.engines.base import checkpoint_fingerprint
from tests.conftest import write_run

LABELER_FP = "sha256:" + "ab" * 32


def _meta(i: int, fingerprint: str | None = LABELER_FP) -> dict:
    meta = {"reference_source": "silver" if i < 60 else "gold", "labeler": "base-model"}
    if fingerprint is not None:
        meta["labeler_fingerprint"] = fingerprint
    return meta


def _runs(root: Path, base_fp: str, labeler_fp: str | None = LABELER_FP) -> tuple[Path, Path]:
    rows = [
        {
            "suite": "domain",
            "task": "t",
            "item_id": str(i),
            "metric": "score",
            "score": float(i % 2),
            "metadata": _meta(i, labeler_fp),
        }
        for i in range(100)
    ]
    base = write_run(root / "base", "base-model", rows)
    tuned = write_run(root / "tuned", "tuned-model", [{**r, "score": 1.0} for r in rows])
    for run, fp in ((base, base_fp), (tuned, "sha256:" + "cd" * 32)):
        manifest = json.loads((run / "manifest.json").read_text())
        manifest["model_fingerprint"] = fp
        (run / "manifest.json").write_text(json.dumps(manifest))
    return base, tuned


def test_the_labeler_as_base_is_refused_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base, tuned = _runs(tmp_path, base_fp=LABELER_FP)
    assert main(["compare", str(base), str(tuned), "--out", str(tmp_path / "o"), "-q"]) == 2
    err = capsys.readouterr().err
    assert f"error: {base} labeled the domain test set (metadata.labeler base-model" in err
    assert "--allow-labeler-as-candidate" in err
    assert not (tmp_path / "o" / "summary.json").exists()


def test_the_override_compares_warns_and_counts_the_references(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base, tuned = _runs(tmp_path, base_fp=LABELER_FP)
    out = tmp_path / "o"
    argv = ["compare", str(base), str(tuned), "--out", str(out), "--allow-labeler-as-candidate"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "warning: " in captured.err and "(compared anyway)" in captured.err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["references"] == {"silver": 60, "gold": 40, "unknown": 0}
    assert (
        "domain references: 60 of 100 gating items model-made (silver: a labeler model's "
        "answers), 40 corrected by hand (gold), 0 unknown" in captured.out
    )


def test_another_model_passes_and_a_name_without_fingerprint_warns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base, tuned = _runs(tmp_path / "a", base_fp="sha256:" + "ef" * 32)
    assert main(["compare", str(base), str(tuned), "--out", str(tmp_path / "o1"), "-q"]) == 0
    assert "labeled the domain test set" not in capsys.readouterr().err
    # The labeler's name recorded without a fingerprint: a warning, not a refusal.
    from collapse_eval.runner import check_labelers

    with pytest.warns(UserWarning, match="has the name of the model that labeled"):
        check_labelers({"base-model": "sha256:00"}, {("base-model", None)}, allow=False)


def test_a_hand_written_test_set_has_no_references_key(tmp_path: Path) -> None:
    from tests.conftest import write_run_pair

    base, tuned = write_run_pair(tmp_path, tuned_score=1.0)
    assert main(["compare", str(base), str(tuned), "--out", str(tmp_path / "o"), "-q"]) == 0
    assert "references" not in json.loads((tmp_path / "o" / "summary.json").read_text())


def test_a_labeler_checkpoint_is_refused_before_it_is_evaluated(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fingerprint = checkpoint_fingerprint(str(tiny_model))
    domain = tmp_path / "test.jsonl"
    items = [
        {
            "id": f"x{i}",
            "task_type": "intent",
            "output_format": "label",
            "prompt": f"Q{i}: intent?",
            "reference": "rent",
            "metadata": {**_meta(i, fingerprint), "labeler": str(tiny_model)},
        }
        for i in range(5)
    ]
    domain.write_text("".join(json.dumps(item) + "\n" for item in items))
    argv = ["compare", str(tiny_model), str(tiny_model), "--domain", str(domain)]
    argv += ["--no-general", "--engine", "hf", "--no-cache", "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    assert "labeled the domain test set" in capsys.readouterr().err
    assert not (tmp_path / "o" / "runs").exists()  # refused before the base was evaluated
