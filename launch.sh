#!/usr/bin/env bash
# One entry point for people and CI. Creates .venv and installs the project on first use.
#
#   ./launch.sh compare [OUTDIR] [--quick] [--seeds=K] [--configs=A,B] [--config.key=value ...]
#       the main job: train configs/mlp.py and configs/cnn.py (or configs/A.py, ...), seeds
#       0..K-1 (default 3), into OUTDIR/{mlp,cnn}/seed_<s> (default runs/compare), then evaluate
#       them all: comparison.json, report.md, *.png in OUTDIR. Again: reuses finished runs,
#       resumes interrupted ones
#   ./launch.sh test [pytest args]               set up, then run the test suite (2 workers)
#   ./launch.sh train CONFIG WORKDIR [--config.key=value ...]     train one model
#   ./launch.sh sweep STUDY OUTDIR [--jobs=N] [--dry_run]  run a study (experiments/README.md)
#   ./launch.sh setup                            only create .venv and install
#   ./launch.sh local|multiprocess N|slurm|tpu CONFIG WORKDIR [...]  one process, N local
#       processes, a SLURM job, a Cloud TPU pod (docs/multihost.md)
#   ./launch.sh status DIR                       the SLURM jobs of a run or study directory
#   ./launch.sh BINARY [flags]                   python -m mnist_jax.BINARY: evaluate, benchmark...
#   compare, train, local, multiprocess, slurm, tpu (python -m mnist_jax.launch) take --dry_run
#   and --config.key=value overrides. Every command takes --help. Paths are relative to the
#   current directory. Exit status: 0 ok, 1 bad input, 130 interrupted, else the failed command's.
# Environment: MNIST_DIR (directory of the four MNIST .gz files; else they are downloaded),
# PYTHON (interpreter used to create .venv, default python3; needs 3.11+), VENV (the venv,
# default .venv next to this script), SKIP_SETUP=1 (use $VENV as it is: no creation, no install).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")" && pwd)
VENV=${VENV:-$ROOT/.venv}
PY=$VENV/bin/python
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH} MNIST_JAX_PROG=./launch.sh  # configs/ from anywhere

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

setup() {
  [[ -n ${SKIP_SETUP:-} ]] && return 0
  local stamp=$VENV/.installed-$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)
  [[ -f $stamp ]] && return 0
  if [[ ! -x $PY ]]; then
    "${PYTHON:-python3}" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
      echo "error: ${PYTHON:-python3} is older than 3.11; set PYTHON=python3.11 (or newer)" >&2
      exit 1
    }
    echo "Creating $VENV" >&2
    "${PYTHON:-python3}" -m venv "$VENV"
  fi
  echo "Installing mnist_jax and its dependencies into $VENV" >&2
  "$PY" -m pip install --quiet --upgrade pip
  # Python compiles each module's bytecode when it is first imported: pip's compiling every file
  # of every package at install time takes longer than the install itself. Unless bytecode is
  # never written (PYTHONDONTWRITEBYTECODE), when every start would compile again.
  local compile=--no-compile
  [[ -n ${PYTHONDONTWRITEBYTECODE:-} ]] && compile=--compile
  "$PY" -m pip install --quiet "$compile" -e "$ROOT[dev]"
  rm -f "$VENV"/.installed-* && touch "$stamp"
}

# help_for USAGE ARGS...: prints USAGE and exits 0 if ARGS ask for help (before any `--`).
help_for() {
  local text=$1 arg
  shift
  for arg; do
    [[ $arg == -- ]] && return 0
    [[ $arg == -h || $arg == --help ]] && { echo "$text"; exit 0; }
  done
  return 0
}

cmd=${1:-help}
[[ $# -gt 0 ]] && shift
case $cmd in
  help | -h | --help) usage ;;
  setup)
    help_for "usage: ./launch.sh setup: create \$VENV with \$PYTHON; install the project" "$@"
    setup
    ;;
  test)
    help_for "usage: ./launch.sh test [pytest args] (2 workers; -n 0 for one), e.g. -m 'not slow'" "$@"
    setup
    cd "$ROOT" && exec "$PY" -m pytest -n 2 --dist loadgroup "$@"
    ;;
  sweep)
    help_for "usage: ./launch.sh sweep STUDY OUTDIR [python -m mnist_jax.sweep flags]" "${@:1:1}"
    [[ $# -ge 2 ]] || { echo "error: sweep takes STUDY OUTDIR (see its --help)" >&2 && exit 1; }
    setup
    exec "$PY" -m mnist_jax.sweep --study="$1" --output_dir="$2" "${@:3}"
    ;;
  compare | train | local | multiprocess | slurm | tpu | status)
    setup
    exec "$PY" -m mnist_jax.launch "$cmd" "$@"
    ;;
  *)
    if [[ $cmd =~ ^[a-z_]+$ ]] && grep -qs 'cli.run(' "$ROOT/mnist_jax/$cmd.py"; then
      setup
      exec "$PY" -m "mnist_jax.$cmd" "$@"
    fi
    echo "error: unknown command '$cmd' (see ./launch.sh help)" >&2
    exit 1
    ;;
esac
