#!/usr/bin/env bash
# One entry point for people and CI. Creates .venv and installs the project on first use.
#
#   ./launch.sh test [pytest args]            set up, then run the test suite
#   ./launch.sh train CONFIG WORKDIR [--config.key=value ...]
#                                             train one model (python -m mnist_jax.main)
#   ./launch.sh sweep STUDY OUTDIR [--dry_run] run an experiments/ study, resumably, and aggregate
#                                             it (python -m mnist_jax.sweep; experiments/README.md)
#   ./launch.sh setup                         only create .venv and install
#
# Environment: MNIST_DIR (directory of the four MNIST .gz files; else they are downloaded),
# PYTHON (interpreter used to create .venv, default python3; needs 3.11+).
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
VENV=${VENV:-$ROOT/.venv}
PY=$VENV/bin/python

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

setup() {
  local stamp=$VENV/.installed-$(sha256sum pyproject.toml | cut -c1-16)
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
  "$PY" -m pip install --quiet -e ".[dev]"
  rm -f "$VENV"/.installed-* && touch "$stamp"
}

cmd=${1:-help}
[[ $# -gt 0 ]] && shift
case $cmd in
  setup) setup ;;
  test)
    setup
    exec "$PY" -m pytest "$@"
    ;;
  train)
    if [[ $# -lt 2 || $1 == --help || $1 == -h ]]; then
      echo "usage: ./launch.sh train CONFIG WORKDIR [--config.key=value ...]" >&2
      echo "  e.g. ./launch.sh train configs/cnn.py runs/cnn --config.num_epochs=3" >&2
      exit 2
    fi
    setup
    config=$1 workdir=$2
    shift 2
    exec "$PY" -m mnist_jax.main --config="$config" --workdir="$workdir" "$@"
    ;;
  sweep)
    if [[ $# -lt 2 || $1 == --help || $1 == -h ]]; then
      echo "usage: ./launch.sh sweep STUDY OUTDIR [--dry_run] [--aggregate_only]" >&2
      echo "  e.g. ./launch.sh sweep experiments/data_amount.py:reduced runs/data_amount_reduced" >&2
      exit 2
    fi
    setup
    study=$1 outdir=$2
    shift 2
    exec "$PY" -m mnist_jax.sweep --study="$study" --output_dir="$outdir" "$@"
    ;;
  help | -h | --help) usage ;;
  *)
    echo "error: unknown command '$cmd'" >&2
    usage >&2
    exit 2
    ;;
esac
