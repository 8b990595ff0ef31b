#!/usr/bin/env bash
# The project's test command (README, "Tests"; CI runs it through .ci/run).
# Installs the package and its test tools into .venv, pinned to the CPU build of torch
# by constraints.txt, starts what the tests need, then runs lint, types and pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -c constraints.txt -e '.[test]'

.venv/bin/ruff check .
.venv/bin/mypy

exec .venv/bin/python -m pytest "$@"
