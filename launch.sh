#!/usr/bin/env bash
# One entry point for people and CI. Creates .venv and installs the project on first use.
#
#   ./launch.sh compare [OUTDIR] [--quick]    train the MLP and the CNN (default configs) into
#                                             OUTDIR/{mlp,cnn} (default runs/compare), then evaluate
#                                             both: OUTDIR/comparison.json, report.md, *.png. Again:
#                                             reuses finished runs, resumes interrupted ones.
#                                             --quick: 1 epoch on 10% of the data (runs/compare_quick)
#   ./launch.sh test [pytest args]            set up, then run the test suite
#   ./launch.sh train CONFIG WORKDIR [--config.key=value ...]
#                                             train one model (python -m mnist_jax.main)
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
  compare)
    outdir='' quick=()
    for arg in "$@"; do
      case $arg in
        --quick) quick=(--config.num_epochs=1 --config.data.train_fraction=0.1) ;;
        -h | --help) usage | grep -A4 'launch.sh compare'; exit 0 ;;
        -*) echo "error: unknown option '$arg' for compare (valid: --quick)" >&2; exit 2 ;;
        *) outdir=$arg ;;
      esac
    done
    outdir=${outdir:-runs/compare${quick:+_quick}}
    setup
    for model in mlp cnn; do
      "$PY" -m mnist_jax.main --config="configs/$model.py" --workdir="$outdir/$model" "${quick[@]}"
    done
    exec "$PY" -m mnist_jax.evaluate --workdirs="$outdir/mlp,$outdir/cnn" --output_dir="$outdir"
    ;;
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
  help | -h | --help) usage ;;
  *)
    echo "error: unknown command '$cmd'" >&2
    usage >&2
    exit 2
    ;;
esac
