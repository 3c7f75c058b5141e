"""schema_version is checked on every read: summary.json (gate, report, correlate), records
and manifests. Older versions are migrated, newer ones refused with what to do."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from collapse_eval import __version__
from collapse_eval.cli import cli
from collapse_eval.errors import InputError
from collapse_eval.records import load_run, manifest_from_json, record_from_json
from collapse_eval.summary import SUMMARY_SCHEMA_VERSION, Summary, load_summary
from collapse_eval.versioning import upgrade
from tests.conftest import synthetic_rows, write_run

NEWER = SUMMARY_SCHEMA_VERSION + 2


@pytest.fixture(scope="module")
def summary_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("cmp")
    base = write_run(tmp / "base", "b", synthetic_rows(1, 0.6, 0.3, n=60))
    tuned = write_run(tmp / "tuned", "t", synthetic_rows(2, 0.6, 0.6, n=60))
    out = tmp / "out"
    result = CliRunner().invoke(cli, ["compare", str(base), str(tuned), "--out", str(out)])
    assert result.exit_code in (0, 1), result.output
    return out / "summary.json"


def _rewrite(src: Path, dst: Path, **changes: Any) -> Path:
    data = json.loads(src.read_text())
    data.update(changes)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(json.dumps(data))
    return dst


def test_current_summary_loads(summary_path: Path) -> None:
    summary = load_summary(summary_path)
    assert summary.schema_version == SUMMARY_SCHEMA_VERSION == 1
    assert summary.to_json() == json.loads(summary_path.read_text())


def test_newer_summary_is_refused_by_gate_and_report(summary_path: Path, tmp_path: Path) -> None:
    newer = _rewrite(summary_path, tmp_path / "out" / "summary.json", schema_version=NEWER)
    expected = (
        f"summary.json schema_version {NEWER} is newer than this collapse-eval "
        f"({__version__}) reads ({SUMMARY_SCHEMA_VERSION}); upgrade collapse-eval "
        "(pip install -U collapse-eval)"
    )
    with pytest.raises(InputError) as err:
        load_summary(newer)
    assert str(err.value) == f"{newer}: field 'schema_version': {expected}"
    for args in (["gate", str(newer)], ["report", str(newer.parent)]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2, (args, result.output)
        assert expected in result.output
    assert not (tmp_path / "out" / "report.html").exists()  # nothing half-written


@pytest.mark.parametrize(
    "change, field, fragment",
    [
        ({"schema_version": "1"}, "schema_version", "must be an integer, got '1'"),
        ({"schema_version": 0}, "schema_version", "summary.json schema_version 0 is older"),
        ({"comparisons": None}, "comparisons", "must be a list"),
        ({"comparisons": [{"suite": "general"}]}, "comparisons[0].task", "missing required"),
    ],
)
def test_bad_summary_names_the_field(
    summary_path: Path, tmp_path: Path, change: dict, field: str, fragment: str
) -> None:
    bad = _rewrite(summary_path, tmp_path / "summary.json", **change)
    result = CliRunner().invoke(cli, ["gate", str(bad)])
    assert result.exit_code == 2
    assert f"field '{field}'" in result.output and fragment in result.output


def test_missing_key_and_non_number(summary_path: Path) -> None:
    data = json.loads(summary_path.read_text())
    del data["verdict"]
    with pytest.raises(InputError, match="field 'verdict': missing required field"):
        Summary.from_json(data)
    data = json.loads(summary_path.read_text())
    data["comparisons"][1]["delta"] = "-0.1"
    with pytest.raises(InputError, match=r"field 'comparisons\[1\].delta': must be a number"):
        Summary.from_json(data)


def test_older_summary_is_migrated_step_by_step(summary_path: Path) -> None:
    """The migration chain, with synthetic versions: v-1 called `results` what is now
    `comparisons`, v-2 had no `unpaired` list."""
    current = json.loads(summary_path.read_text())
    older = {k: v for k, v in current.items() if k not in ("comparisons", "unpaired")}
    older["results"] = current["comparisons"]
    older["schema_version"] = SUMMARY_SCHEMA_VERSION - 2
    steps = {
        SUMMARY_SCHEMA_VERSION - 2: lambda s: {**s, "unpaired": []},
        SUMMARY_SCHEMA_VERSION - 1: lambda s: {
            **{k: v for k, v in s.items() if k != "results"},
            "comparisons": s["results"],
        },
    }
    migrated = Summary.from_json(older, migrations=steps).to_json()
    assert migrated["schema_version"] == SUMMARY_SCHEMA_VERSION
    assert migrated["comparisons"] == current["comparisons"] and migrated["unpaired"] == []
    assert "results" not in migrated and older["schema_version"] == SUMMARY_SCHEMA_VERSION - 2
    oldest = SUMMARY_SCHEMA_VERSION - 2
    with pytest.raises(InputError, match=f"it reads {oldest} to {SUMMARY_SCHEMA_VERSION}"):
        Summary.from_json({**older, "schema_version": oldest - 1}, migrations=steps)


def test_upgrade_without_version_uses_the_default() -> None:
    obj = {"a": 1}
    assert upgrade(obj, kind="x", current=1, migrations={}, path="p", default=1) is obj
    with pytest.raises(InputError, match="field 'schema_version': missing required field"):
        upgrade(obj, kind="x", current=1, migrations={}, path="p")


def test_newer_record_and_manifest_are_refused(tmp_path: Path) -> None:
    row = {"suite": "domain", "task": "t", "item_id": "1", "metric": "m", "score": 1}
    assert record_from_json(row).schema_version == 1
    with pytest.raises(InputError) as err:
        record_from_json({**row, "schema_version": 2, "new_field": 1}, path="r.jsonl", line=3)
    assert str(err.value) == (
        "r.jsonl:3: field 'schema_version': records.jsonl schema_version 2 is newer than "
        f"this collapse-eval ({__version__}) reads (1); upgrade collapse-eval "
        "(pip install -U collapse-eval)"
    )
    with pytest.raises(InputError, match=r"manifest.json schema_version 5 is newer .* reads \(1\)"):
        manifest_from_json({"schema_version": 5, "model": "m", "future": True})
    run = write_run(tmp_path / "run", "m", [row])
    manifest = json.loads((run / "manifest.json").read_text())
    (run / "manifest.json").write_text(json.dumps({**manifest, "schema_version": 2}))
    with pytest.raises(InputError, match="upgrade collapse-eval"):
        load_run(run)
