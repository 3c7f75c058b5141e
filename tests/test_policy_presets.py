"""Named policies (`--policy equivalence` / `--policy release`) and the wording of a
reason when the minimum detectable effect is null (issue 19, item 6)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from collapse_eval.cli import main
from collapse_eval.policy import PRESETS, default_policy, load_policy
from tests.conftest import write_run


def _same_runs(root: Path, n: int) -> tuple[Path, Path]:
    """Two runs that answer every general and domain item alike (0 flips): a lossless copy."""
    rows = []
    for i in range(n):
        score = float(i % 3 != 0)
        general = {"suite": "general", "task": "arc_easy", "item_id": str(i), "metric": "acc"}
        domain = {"suite": "domain", "task": "t", "item_id": f"d{i}", "metric": "score"}
        rows += [{**general, "score": score}, {**domain, "score": score}]
    tasks = {
        "arc_easy": {"suite": "general", "primary_metric": "acc", "n": n},
        "t": {"suite": "domain", "primary_metric": "score", "n": n},
    }
    return write_run(root / "base", "b", rows, tasks), write_run(root / "bf16", "c", rows, tasks)


def _compare(tmp_path: Path, base: Path, tuned: Path, *extra: str) -> tuple[int, dict]:
    out = tmp_path / "cmp"
    code = main(["compare", str(base), str(tuned), "--out", str(out), "-q", *extra])
    summary = json.loads((out / "summary.json").read_text()) if code in (0, 1) else {}
    return code, summary


def test_equivalence_preset_passes_a_lossless_copy_that_release_fails(tmp_path: Path) -> None:
    base, copy = _same_runs(tmp_path, 2000)
    code, summary = _compare(tmp_path, base, copy, "--policy", "equivalence")
    assert code == 0, summary.get("reasons")
    rows = {(c["suite"], c["task"]): c for c in summary["comparisons"] if not c.get("group_by")}
    assert rows["general", "arc_easy"]["status"] == "equivalent"
    assert rows["domain", "t"]["status"] == "equivalent"
    assert rows["domain", "t"]["required"] == "equivalent"
    assert summary["policy"]["domain"] == {**summary["policy"]["domain"], "require": "equivalent"}
    assert summary["policy"]["domain"]["require_gain"] is False
    code, summary = _compare(tmp_path, base, copy, "--policy", "release")
    assert code == 1  # today's default: no significant domain gain
    assert any("no significant gain" in r for r in summary["reasons"])


def test_equivalence_preset_fails_a_domain_task_it_cannot_show_equivalent(
    tmp_path: Path,
) -> None:
    base, copy = _same_runs(tmp_path, 40)  # too few items for a +-2 point TOST
    code, summary = _compare(tmp_path, base, copy, "--policy", "equivalence")
    assert code == 1
    failing = [r for r in summary["reasons"] if "is not equivalent" in r]
    assert any(
        r.startswith("domain task t is not equivalent (required by the policy)") for r in failing
    )
    assert any(r.startswith("arc_easy is not equivalent") for r in failing)


def test_a_null_minimum_detectable_effect_is_explained(tmp_path: Path) -> None:
    base, copy = _same_runs(tmp_path, 100)
    code, summary = _compare(tmp_path, base, copy)
    note = next(r for r in summary["reasons"] if r.startswith("note: arc_easy"))
    assert not note.endswith("n = 100")
    assert note.endswith(
        "n = 100 and no item changed its score, so the paired differences have no spread to "
        "estimate a minimum detectable effect from; the CI's width comes from n alone, and "
        "only more items narrow it"
    )


def test_gate_takes_a_preset_and_a_file_named_like_one_is_dot_slash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, copy = _same_runs(tmp_path, 2000)
    assert _compare(tmp_path, base, copy)[0] == 1
    summary = str(tmp_path / "cmp" / "summary.json")
    assert main(["gate", summary, "--policy", "equivalence"]) == 0
    monkeypatch.chdir(tmp_path)
    Path("equivalence").write_text("domain: {require_gain: true}\n")
    assert main(["gate", summary, "--policy", "./equivalence"]) == 1  # the file, not the preset


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("equivalnce", "Did you mean 'equivalence'? Presets: release, equivalence"),
        ("relase", "Did you mean 'release'?"),
    ],
)
def test_a_mistyped_preset_exits_2_with_a_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str, expected: str
) -> None:
    base, copy = _same_runs(tmp_path, 10)
    assert (
        main(["compare", str(base), str(copy), "--out", str(tmp_path / "o"), "--policy", value])
        == 2
    )
    err = capsys.readouterr().err
    assert "policy file not found, and not a preset" in err and expected in err


def test_release_is_the_default_policy_and_domain_require_is_checked(tmp_path: Path) -> None:
    assert load_policy("release") == default_policy()
    assert set(PRESETS) == {"release", "equivalence"}
    bad = tmp_path / "p.yaml"
    bad.write_text("domain: {require: equivalnt}\n")
    with pytest.raises(
        Exception, match=r"p.yaml:1: field 'domain.require'.*Did you mean 'equivalent'"
    ):
        load_policy(bad)
