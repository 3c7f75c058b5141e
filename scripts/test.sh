#!/usr/bin/env bash
# Set up the dev environment, then what CI checks; a failure fails the run:
#   1. ruff check .            lint (rules in pyproject.toml [tool.ruff.lint])
#   2. ruff format --check .   formatting (ruff pinned to 0.17.6 in the dev extra)
#   3. mypy collapse_eval      strict typing of the package ([tool.mypy] strict = true);
#      it runs in the background beside pytest (a cold mypy takes about 50 CPU seconds,
#      which fit in the gaps the two test workers leave) and its output and status are
#      reported after pytest's
#   4. pytest                  the whole suite in two pytest-xdist workers, one per core of
#      the CI machine (`-n 2 --dist loadfile`: a file's tests share one worker, so its
#      module fixtures are built once; files with a slow test are handed out first, and
#      each worker's torch runs one thread: tests/conftest.py), with the 20 slowest tests
#      and the wall/CPU summary of tests/conftest.py at the end; extra arguments pass
#      through to pytest (`-n 0` runs it in one process). Exit 5 (no test ran) fails like
#      any other non-zero exit. With CI=true (set by .ci/run) a skipped test is a failure
#      (tests/conftest.py).
#      tests/test_base_install.py installs the package's wheel non-editably into fresh
#      venvs (the base install without torch, and the packaged demo tasks) from the local
#      wheel directory .test-wheels/ with --no-index: setup fills it (tests/wheelhouse.py),
#      so the tests themselves reach no network.
set -euo pipefail
cd "$(dirname "$0")/.."
step() { echo "== test.sh (${SECONDS} s): $*"; }
bash scripts/setup.sh --dev
PY=.venv/bin/python
# The package and tests as bytecode once, on both cores: where PYTHONDONTWRITEBYTECODE is
# set, every process a test starts would otherwise compile them again.
"$PY" -m compileall -q -j 0 collapse_eval tests >/dev/null
step "setup done"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
step "ruff check . (lint)"
"$PY" -m ruff check .
step "ruff format --check . (formatting)"
"$PY" -m ruff format --check .
step "mypy --strict collapse_eval (typing), in the background beside pytest"
mypy_log=$(mktemp)
"$PY" -m mypy collapse_eval >"$mypy_log" 2>&1 &
mypy_pid=$!
trap 'kill "$mypy_pid" 2>/dev/null || true' EXIT
# mostly downloads: it overlaps mypy's computing
step "wheels for the fresh-venv tests (from the package index into .test-wheels/)"
"$PY" -m tests.wheelhouse
if [ "${CI:-}" = true ]; then
  step "pytest (CI=true: a skipped test fails the run)"
else
  step "pytest (skips allowed; CI=true makes them failures)"
fi
pytest_status=0
"$PY" -m pytest -q -p no:cacheprovider -n 2 --dist loadfile --durations=20 "$@" || pytest_status=$?
mypy_status=0
wait "$mypy_pid" || mypy_status=$?
step "mypy --strict collapse_eval (typing): exit $mypy_status"
cat "$mypy_log"
rm -f "$mypy_log"
step "pytest: exit $pytest_status"
if [ "$pytest_status" != 0 ]; then exit "$pytest_status"; fi
exit "$mypy_status"
