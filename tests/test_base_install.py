"""The base install (no extra) runs every model-free command without torch, transformers,
lm-eval, vLLM or datasets; a command that needs them exits 2 naming the extra to install.

Two levels: the model-free commands run in a subprocess where a meta-path finder makes
those packages "not installed" and an audit hook records every attempt to import them;
and a real fresh virtual environment gets the package's wheel (non-editable, base only)
and runs them from the installed copy (marked slow). The fresh venvs install from a local
wheel directory with ``--no-index`` (tests/wheelhouse.py fills it before the tests), so
no test reaches the package index; the package's own wheel is built once per module.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import time
from importlib import resources
from pathlib import Path

import pytest

from tests.conftest import synthetic_rows, write_run
from tests.wheelhouse import (
    FILL_COMMAND,
    LOWEST_BASE,
    WHEELHOUSE,
    base_constraints,
    build_wheel,
    lowest_lm_eval,
)

# What only the `run` and `vllm` extras install (and what those pull in).
HEAVY = (
    "torch",
    "transformers",
    "tokenizers",
    "lm_eval",
    "vllm",
    "datasets",
    "rouge_score",
    "bm25s",
    "huggingface_hub",
    "safetensors",
    "accelerate",
)
GENERAL_TASKS = {"arc_easy": {"suite": "general", "primary_metric": "acc"}}

# Runs collapse-eval commands in one interpreter with HEAVY unimportable (as if not
# installed: ModuleNotFoundError), recording every attempt to import them (the audit event
# fires before the finders are asked).
BLOCKED_RUNNER = r"""
import json, sys
blocked = set(json.loads(sys.argv[1]))
attempted = []
def hook(event, args):
    if event == "import" and args[0].split(".")[0] in blocked:
        attempted.append(args[0])
sys.addaudithook(hook)
class Blocker:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Blocker)
from collapse_eval.cli import main
codes = [main(argv) for argv in json.loads(sys.argv[2])]
with open(sys.argv[3], "w") as fh:
    json.dump({"codes": codes, "attempted": sorted(set(attempted))}, fh)
"""


def _packaged(relative: str) -> Path:
    return Path(str(resources.files("collapse_eval") / relative))


def _model_free_world(tmp: Path) -> list[list[str]]:
    """Run directories and a correlate table in ``tmp``; the model-free commands over them
    (paths relative to ``tmp``, where they run), each of which must exit 0."""
    write_run(tmp / "base", "base-model", synthetic_rows(1, 0.6, 0.2), GENERAL_TASKS)
    write_run(tmp / "tuned", "tuned-model", synthetic_rows(1, 0.6, 0.7), GENERAL_TASKS)
    lines = ["run,quality"]
    for i, (quality, p_domain) in enumerate([(0.2, 0.3), (0.5, 0.5), (0.9, 0.8), (0.4, 0.6)]):
        write_run(tmp / f"r{i}", f"r{i}", synthetic_rows(i, 0.6, p_domain), GENERAL_TASKS)
        lines.append(f"r{i},{quality}")
    (tmp / "table.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return [
        ["compare", "base", "tuned", "--out", "cmp"],
        ["gate", "cmp/summary.json"],
        ["report", "cmp"],
        ["correlate", "table.csv", "--out", "corr"],
    ]


def _packaged_commands(root: Path) -> list[list[str]]:
    """validate and quality (without a model) on the demo files shipped in the package
    installed at ``root`` (the collapse_eval directory)."""
    return [
        ["validate", str(root / "tasks" / "demo" / "realestate_test.jsonl")],
        [
            "quality",
            str(root / "tasks" / "demo" / "realestate_train.jsonl"),
            "--out",
            "q",
            "--against",
            str(root / "tasks" / "demo" / "realestate_test.jsonl"),
        ],
        ["suites", "--benchmarks", str(root / "demo" / "benchmarks.yaml")],
    ]


def _run_blocked(tmp: Path, commands: list[list[str]]) -> dict[str, list]:
    result_file = tmp / "blocked.json"
    proc = subprocess.run(
        [sys.executable, "-c", BLOCKED_RUNNER, json.dumps(HEAVY), json.dumps(commands)]
        + [str(result_file)],
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, list] = json.loads(result_file.read_text())
    result["stderr"] = proc.stderr.splitlines()
    return result


def _check_outputs(tmp: Path) -> None:
    summary = json.loads((tmp / "cmp" / "summary.json").read_text())
    assert summary["verdict"] == "pass"
    assert (tmp / "cmp" / "report.html").stat().st_size > 1000
    assert (tmp / "corr" / "correlation.json").is_file()
    quality = json.loads((tmp / "q" / "quality.json").read_text())
    assert quality["n_samples"] > 100
    contamination = json.loads((tmp / "q" / "contamination.json").read_text())
    assert contamination["n_test"] == 540


def test_model_free_commands_never_import_the_model_libraries(tmp_path: Path) -> None:
    commands = _model_free_world(tmp_path) + _packaged_commands(_packaged(""))
    result = _run_blocked(tmp_path, commands)
    assert result["codes"] == [0] * len(commands), result["stderr"]
    assert result["attempted"] == []
    _check_outputs(tmp_path)


MODEL_COMMANDS = {
    "run": ["run", "some/model", "--out", "r"],
    "compare": ["compare", "base", "some/model", "--out", "cmp"],
    "demo": ["demo", "--out", "d"],
    "data prepare": ["data", "prepare", "--out", "data"],
    "tasks": ["tasks", "arc"],
}


def test_model_commands_without_the_run_extra_exit_2_naming_it(tmp_path: Path) -> None:
    write_run(tmp_path / "base", "base-model", synthetic_rows(1, 0.6, 0.2), GENERAL_TASKS)
    result = _run_blocked(tmp_path, list(MODEL_COMMANDS.values()))
    assert result["codes"] == [2] * len(MODEL_COMMANDS)
    errors = [line for line in result["stderr"] if line.startswith("error: ")]
    assert len(errors) == len(MODEL_COMMANDS), result["stderr"]
    for name, message in zip(MODEL_COMMANDS, errors, strict=True):
        assert message.startswith(f"error: `collapse-eval {name}"), message
        assert "needs the 'run' extra: torch is not installed; " in message
        assert "lm-eval is not installed" in message
        assert "Install it with: pip install 'collapse-eval[run]'" in message
    assert "of some/model (not a run directory: a model to evaluate)" in errors[1]
    assert not any("Traceback" in line for line in result["stderr"])
    assert result["attempted"] == []  # refused before importing anything heavy


def test_an_engine_import_without_the_run_extra_exits_2_naming_it(tmp_path: Path) -> None:
    """quality --model with the transformers engine is not checked up front: the import of
    torch that fails is turned into the same message (the safety net for every command)."""
    model = tmp_path / "ckpt"
    model.mkdir()
    (model / "config.json").write_text("{}", encoding="utf-8")
    train = tmp_path / "train.jsonl"
    train.write_text('{"prompt": "2+2?", "response": "4"}\n', encoding="utf-8")
    argv = ["quality", str(train), "--model", str(model), "--engine", "hf", "--no-cache"]
    result = _run_blocked(tmp_path, [argv + ["--out", "q"]])
    message = "\n".join(result["stderr"])
    assert result["codes"] == [2], message
    assert "`collapse-eval quality` needs the 'run' extra: " in message
    assert "is not installed" in message
    assert "pip install 'collapse-eval[run]'" in message
    assert result["attempted"]  # the recorder sees the engine's import of torch/transformers


# ---------------------------------------------------------------- a real fresh venv


@pytest.fixture(scope="module")
def package_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package's wheel, built once from the source under test."""
    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module")
def wheelhouse() -> Path:
    """The local wheel directory; missing, the fresh-venv tests cannot run offline (a skip,
    so a failure under CI=true)."""
    if not any(WHEELHOUSE.glob(f"lm_eval-{lowest_lm_eval()}-*.whl")):
        pytest.skip(f"no local wheel directory {WHEELHOUSE}: fill it with {FILL_COMMAND}")
    return WHEELHOUSE


def _clean_env() -> dict[str, str]:
    """No PYTHONPATH: the venv must import its installed copy, never the source tree."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _pip_install(venv: Path, wheels: Path, env: dict[str, str], *args: str) -> None:
    """The running interpreter's pip installs into ``venv`` (--python: no ensurepip
    needed), from the local wheel directory only."""
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install"]
        + ["-q", "--no-index", "--find-links", str(wheels), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert install.returncode == 0, install.stdout + install.stderr


def _fresh_venv(tmp: Path, env: dict[str, str], wheel: Path, wheels: Path, *args: str) -> Path:
    """An empty venv with the package's wheel installed (non-editable)."""
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    _pip_install(venv, wheels, env, *args, str(wheel))
    return venv


def _installed_package(venv: Path, env: dict[str, str], cwd: Path) -> Path:
    """The collapse_eval directory the venv imports: its installed copy, not the source."""
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import collapse_eval; print(collapse_eval.__file__)"],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        check=True,
    )
    package = Path(where.stdout.strip()).parent
    assert package.is_relative_to(venv), package
    return package


@pytest.mark.slow
def test_fresh_venv_base_install_runs_model_free_commands_without_torch(
    tmp_path: Path, wheelhouse: Path, package_wheel: Path
) -> None:
    """The package's wheel (not editable, no extra) into an empty venv, with the base
    dependencies at their lowest supported versions: no torch there, and gate, report,
    compare of run directories, correlate, validate and quality on the packaged demo files
    all work from the installed copy."""
    env = _clean_env()
    start = time.monotonic()
    venv = _fresh_venv(tmp_path, env, package_wheel, wheelhouse, *base_constraints())
    python = venv / "bin" / "python"
    installed_s = time.monotonic() - start

    probe = subprocess.run(
        [str(python), "-c", "import collapse_eval, torch"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert probe.returncode == 1
    assert "No module named 'torch'" in probe.stderr
    found = f"[m for m in {list(HEAVY)!r} if importlib.util.find_spec(m)]"
    heavy = subprocess.run(
        [str(python), "-c", f"import importlib.util; print({found})"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert heavy.stdout.strip() == "[]"
    if base_constraints():  # what pip installed is what the constraints pin
        pins = dict(
            line.split("==")
            for line in LOWEST_BASE.read_text().splitlines()
            if line and not line.startswith("#")
        )
        script = f"import importlib.metadata as m; print([m.version(d) for d in {list(pins)!r}])"
        versions = subprocess.run(
            [str(python), "-c", script], capture_output=True, text=True, env=env, check=True
        )
        assert versions.stdout.strip() == repr(list(pins.values()))
    package = _installed_package(venv, env, tmp_path)

    codes = {}
    for argv in _model_free_world(tmp_path) + _packaged_commands(package):
        proc = subprocess.run(
            [str(venv / "bin" / "collapse-eval"), *argv],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=env,
            timeout=300,
        )
        codes[argv[0]] = proc.returncode
        assert proc.returncode == 0, f"{argv}: {proc.stderr}"
    assert list(codes) == [
        "compare",
        "gate",
        "report",
        "correlate",
        "validate",
        "quality",
        "suites",
    ]
    _check_outputs(tmp_path)
    refused = subprocess.run(
        [str(venv / "bin" / "collapse-eval"), "run", "some/model", "--out", "r"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert refused.returncode == 2
    assert "pip install 'collapse-eval[run]'" in refused.stderr
    print(f"fresh venv: base install {installed_s:.1f} s, total {time.monotonic() - start:.1f} s")


# ---------------------------------------------------------------- version checks, in process


def test_version_tuple_reads_the_release_part() -> None:
    from collapse_eval.extras import _version_tuple

    assert _version_tuple("2.13.0+cpu") == (2, 13, 0)
    assert _version_tuple("0.4.12rc1") == (0, 4, 12)
    assert _version_tuple("4.56.0.dev0") == (4, 56, 0)
    assert _version_tuple("0.4.11") < (0, 4, 12) <= _version_tuple("0.4.12")


def test_an_old_lm_eval_is_named_with_the_version_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    from collapse_eval import extras
    from collapse_eval.errors import MissingExtraError

    real = extras._installed_version
    monkeypatch.setattr(
        extras, "_installed_version", lambda d: "0.4.11" if d == "lm-eval" else real(d)
    )
    with pytest.raises(MissingExtraError) as caught:
        extras.require_extra("run", "`collapse-eval run`")
    assert caught.value.exit_code == 2
    assert caught.value.problems == ["lm-eval 0.4.11 is installed, 0.4.12 or newer is needed"]
    assert "pip install 'collapse-eval[run]'" in str(caught.value)


def test_an_import_error_maps_to_its_extra_or_to_nothing() -> None:
    from collapse_eval.extras import extra_for_import_error

    broken = ModuleNotFoundError(
        "No module named 'lm_eval.tasks._index'", name="lm_eval.tasks._index"
    )
    error = extra_for_import_error(broken, "`collapse-eval run`")
    assert error is not None and error.extra == "run"
    assert error.problems[0].startswith("lm-eval ")
    assert "cannot be imported (No module named 'lm_eval.tasks._index')" in error.problems[0]
    assert extra_for_import_error(ModuleNotFoundError("x", name="yaml"), "x") is None
    assert extra_for_import_error(ImportError("no name"), "x") is None


@pytest.mark.slow
def test_fresh_venv_installed_copy_runs_the_packaged_demo_tasks(
    tmp_path: Path, tiny_model: Path, wheelhouse: Path, package_wheel: Path
) -> None:
    """The package-data of a non-editable install: the demo suite (benchmarks file, lm-eval
    task YAMLs and their data) and the demo domain set, read from the installed copy, run
    a tiny model, with lm-eval at its lowest supported version (general.py uses its task
    index, new in 0.4.12). The other packages of the `run` extra (GBs) are borrowed from
    this interpreter's site-packages through a .pth file instead of being downloaded."""
    env = _clean_env()
    start = time.monotonic()
    venv = _fresh_venv(tmp_path, env, package_wheel, wheelhouse, "--no-deps")
    borrowed = sysconfig.get_paths()["purelib"]
    site = Path(sysconfig.get_paths(vars={"base": str(venv), "platbase": str(venv)})["purelib"])
    (site / "borrowed_run_extra.pth").write_text(borrowed + "\n", encoding="utf-8")
    # lm-eval at its lowest supported version, in front of the borrowed (newer) one.
    _pip_install(venv, wheelhouse, env, "--no-deps", f"lm-eval=={lowest_lm_eval()}")
    package = _installed_package(venv, env, tmp_path)
    version = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import importlib.metadata as m; print(m.version('lm-eval'))",
        ],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert version.stdout.strip() == lowest_lm_eval()
    domain = tmp_path / "realestate.jsonl"
    lines = (package / "tasks" / "demo" / "realestate_test.jsonl").read_text().splitlines()
    domain.write_text("\n".join(lines[:12]) + "\n", encoding="utf-8")
    argv = [str(venv / "bin" / "collapse-eval"), "run", str(tiny_model), "--engine", "hf"]
    argv += ["--benchmarks", str(package / "demo" / "benchmarks.yaml"), "--suite", "demo"]
    argv += ["--limit", "3", "--domain", str(domain), "--no-cache", "--quiet", "--out", "r"]
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(x) for x in (tmp_path / "r" / "records.jsonl").read_text().splitlines()]
    tasks = {(r["suite"], r["task"]) for r in records}
    assert tasks == {
        ("domain", "realestate"),
        *(("general", t) for t in ("demo_arithmetic", "demo_capitals", "demo_copy", "demo_sort")),
    }
    assert len(records) == 12 + 4 * 3
    print(f"fresh venv, packaged demo tasks: {time.monotonic() - start:.1f} s")
