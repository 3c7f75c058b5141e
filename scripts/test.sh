#!/usr/bin/env bash
# Set up the dev environment, then what CI checks, in order; the first failure stops it:
#   1. ruff check .            lint (rules in pyproject.toml [tool.ruff.lint])
#   2. ruff format --check .   formatting (ruff pinned to 0.17.6 in the dev extra)
#   3. mypy collapse_eval      strict typing of the package ([tool.mypy] strict = true)
#   4. pytest                  the whole suite, in one process (pytest-xdist's two workers
#      were slower on the two-core machine: each imports torch, transformers and lm-eval
#      again), with the 20 slowest tests and the wall/CPU summary of tests/conftest.py at
#      the end; extra arguments pass through to pytest. Exit 5 (no test ran) fails like
#      any other non-zero exit. With CI=true (set by .ci/run) a skipped test is a failure
#      (tests/conftest.py).
#      tests/test_base_install.py installs the package's wheel non-editably into fresh
#      venvs (the base install without torch, and the packaged demo tasks) from the local
#      wheel directory .test-wheels/ with --no-index: setup fills it (tests/wheelhouse.py),
#      so the tests themselves reach no network.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
PY=.venv/bin/python

step() { echo "== test.sh: $*"; }
step "wheels for the fresh-venv tests (from the package index into .test-wheels/)"
"$PY" -m tests.wheelhouse
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
step "ruff check . (lint)"
"$PY" -m ruff check .
step "ruff format --check . (formatting)"
"$PY" -m ruff format --check .
step "mypy --strict collapse_eval (typing)"
"$PY" -m mypy collapse_eval
if [ "${CI:-}" = true ]; then
  step "pytest (CI=true: a skipped test fails the run)"
else
  step "pytest (skips allowed; CI=true makes them failures)"
fi
exec "$PY" -m pytest -q -p no:cacheprovider --durations=20 "$@"
