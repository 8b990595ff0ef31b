#!/usr/bin/env bash
# The plain-sbatch path to a sweep: the same trials and result files as `python -m sweeper`.
#
#   sbatch slurm/submit_hyperparameter_search.sh SEARCH [PARALLEL] [OVERRIDES...]
#       a small job that plans the sweep and submits its arrays (at most PARALLEL at once)
#   bash slurm/submit_hyperparameter_search.sh SEARCH [PARALLEL] [OVERRIDES...]
#       the same from a login node
#   sbatch --array=0-35%4 slurm/submit_hyperparameter_search.sh SEARCH [OVERRIDES...]
#       each array task plans the sweep (idempotently, under a file lock) and runs the trial
#       whose id is its array index; size the array to the trial count (`sweeper plan` says it)
#
# SEARCH names conf/search/SEARCH.yaml. Environment: SWEEP_DIR (default
# multirun/SEARCH-<job id>, one dir shared by all tasks of an array), SWEEPER_PYTHON (default:
# python3 on PATH; point it at your virtualenv's python). Run it from the project's root.
#
#SBATCH --job-name=sweeper
#SBATCH --time=60
#SBATCH --mem=4G
#SBATCH --cpus-per-task=1
#SBATCH --requeue
#SBATCH --signal=B:USR2@120
set -euo pipefail

usage() { sed -n '2,16p' "$0" >&2; exit 2; }
[ "$#" -ge 1 ] || usage
case "$1" in -h|--help) usage ;; esac
search="$1"
shift
python="${SWEEPER_PYTHON:-python3}"
# sbatch runs a copy of this script from a spool dir: the project is the dir it was submitted from.
cd "${SLURM_SUBMIT_DIR:-.}"

if [ -n "${SLURM_ARRAY_TASK_ID:-}" ]; then
  sweep_dir="${SWEEP_DIR:-multirun/$search-$SLURM_ARRAY_JOB_ID}"
  # Every task plans, so that no task runs trials of another sweep: only composing the config
  # (Hydra) gives the fingerprint that tells whether SWEEP_DIR already holds this one, and a
  # mismatch must stop the task. The expensive part is not repeated: once a task has planned
  # the dir, the others find the same fingerprint and settings in sweep.yaml and skip the
  # controller checks (`scontrol show config`, `sbatch --test-only`; SlurmExecutor.check).
  "$python" -m sweeper plan "+search=$search" cluster=slurm --sweep-dir "$sweep_dir" "$@" >/dev/null
  # exec: the time-limit warning (--signal=B:USR2) must reach Python, not a waiting shell
  exec "$python" -u -m sweeper.worker "$sweep_dir" --trials "$SLURM_ARRAY_TASK_ID"
fi

parallel=16
if [ "$#" -ge 1 ] && [[ "$1" =~ ^[0-9]+$ ]]; then
  parallel="$1"
  shift
fi
sweep_dir="${SWEEP_DIR:-multirun/$search-${SLURM_JOB_ID:-$(date +%Y-%m-%d_%H-%M-%S)}}"
exec "$python" -m sweeper "+search=$search" cluster=slurm "cluster.array_parallelism=$parallel" \
  --sweep-dir "$sweep_dir" "$@"
