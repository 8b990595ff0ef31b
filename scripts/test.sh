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

# A real single-node SLURM cluster for the tests marked `slurm`, and Debian's Chromium,
# headless, for the report page test (root and apt-get needed; without them those tests skip
# and say so).
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  bash slurm/local_cluster.sh start
  if ! command -v chromium >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
  fi
else
  echo "scripts/test.sh: not root or no apt-get: the SLURM and Chromium tests will skip" >&2
fi

.venv/bin/ruff check .
.venv/bin/mypy

exec .venv/bin/python -m pytest "$@"
