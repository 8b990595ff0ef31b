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

# A real single-node SLURM cluster for the tests marked `slurm`, a PostgreSQL server of the
# tests' own (its URL in SWEEPER_TEST_POSTGRES_URL), and Debian's Chromium, headless, for the
# report page test (root and apt-get needed; without them those tests skip and say so).
# Neither script takes over what it did not set up: on a machine with its own SLURM cluster
# local_cluster.sh refuses (exit 3), and the SLURM tests then use that cluster if it is usable,
# else they are left out with the reason.
pytest_args=()
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  rc=0
  bash slurm/local_cluster.sh start || rc=$?
  if [ "$rc" = 3 ]; then
    if bash slurm/local_cluster.sh status 2>/dev/null; then
      echo "scripts/test.sh: the SLURM tests use the cluster already running here, left as it is" >&2
    else
      echo "scripts/test.sh: SLURM tests skipped: this machine's own SLURM setup (above) is not usable as it is, and is left untouched" >&2
      pytest_args=(-m "not slurm")
    fi
  elif [ "$rc" != 0 ]; then
    exit "$rc"
  fi
  if [ -z "${SWEEPER_TEST_POSTGRES_URL:-}" ]; then
    rc=0
    url=$(bash scripts/test_postgres.sh start) || rc=$?
    if [ "$rc" = 0 ]; then
      export SWEEPER_TEST_POSTGRES_URL=$url
    elif [ "$rc" = 3 ]; then
      echo "scripts/test.sh: no PostgreSQL server of the tests' own (above): the PostgreSQL tests will skip" >&2
    else
      exit "$rc"
    fi
  fi
  if ! command -v chromium >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
  fi
else
  echo "scripts/test.sh: not root or no apt-get: the SLURM, PostgreSQL and Chromium tests will skip" >&2
fi

.venv/bin/ruff check .
.venv/bin/mypy

# Two pytest workers (SWEEPER_TEST_WORKERS): the SLURM tests run in order on one of them, each
# other file's tests together on either (tests/conftest.py); 1 runs the suite in one process.
workers=${SWEEPER_TEST_WORKERS:-2}
xdist=()
if [ "$workers" != 1 ]; then
  xdist=(-n "$workers")
fi
exec .venv/bin/python -m pytest ${xdist[@]+"${xdist[@]}"} ${pytest_args[@]+"${pytest_args[@]}"} "$@"
