#!/usr/bin/env bash
# The GPU check: on a machine with one NVIDIA GPU, in a fresh venv, in under 8 minutes:
#   1. install the project and the CUDA JAX wheels given (default: jax[cuda12] at the version
#      the project installs), and record the GPU, driver and JAX devices;
#   2. the GPU-relevant tests: layers (formulations chosen by the backend), models, training and
#      checkpoints (-m core), pmap against shard_map;
#   3. the benchmark (throughput, compile times, achieved FLOP/s, inference) with the speedrun
#      configs' time to accuracy (3 seeds);
#   4. one seed of configs/mlp.py and configs/cnn.py, trained and evaluated.
# Every step's command, exit status and seconds go to OUTDIR/steps.tsv, its output to
# OUTDIR/<step>.log; a failed step does not stop the later ones; the exit status is 1 if any
# failed.
#
#   benchmarks/gpu/check.sh OUTDIR [WHEEL_OR_REQUIREMENT ...]
#
# Environment: MNIST_DIR (the four MNIST .gz files; else downloaded), PYTHON (for the venv,
# default python3), VENV (default .venv-gpu), CHECK_CPU=1: the same steps on the CPU at smoke-test
# size and without installing wheels (what tests/test_benchmark.py runs, so that the script
# cannot rot), DRY_RUN=1: print the steps only.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
[[ $# -ge 1 && $1 != -h && $1 != --help ]] || { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 1; }
OUT=$(mkdir -p "$1" && cd "$1" && pwd)
shift
export VENV=${VENV:-$ROOT/.venv-gpu}
PY=$VENV/bin/python
cpu=${CHECK_CPU:-}
failed=0
printf 'step\tstatus\tseconds\tcommand\n' >"$OUT/steps.tsv"

step() {  # step NAME COMMAND...: run it, log it, time it
  local name=$1 t=$SECONDS status
  shift
  echo "== $name: $*" >&2
  if [[ -n ${DRY_RUN:-} ]]; then
    return 0
  fi
  "$@" >"$OUT/$name.log" 2>&1
  status=$?
  printf '%s\t%s\t%s\t%s\n' "$name" "$status" "$((SECONDS - t))" "$*" >>"$OUT/steps.tsv"
  if [[ $status != 0 ]]; then
    failed=1
    echo "== $name failed ($status); the end of $OUT/$name.log:" >&2
    tail -n 15 "$OUT/$name.log" >&2
  fi
}

cd "$ROOT"
step setup ./launch.sh setup
if [[ -z $cpu ]]; then
  version=$([[ -x $PY ]] && "$PY" -c 'import jax; print(jax.__version__)')
  [[ $# -gt 0 ]] || set -- "jax[cuda12]==${version:-0}"
  step install_cuda_jax "$PY" -m pip install --quiet "$@"
  step nvidia_smi nvidia-smi
  platform=gpu
  size=() quick= seeds=3 evaluate=(--quantize=int8) tests=(tests/test_layers.py tests/test_models.py tests/test_train.py)
else
  export JAX_PLATFORMS=cpu
  platform=cpu
  size=(--config.num_epochs=1 --config.data.train_fraction=0.02) quick=:quick seeds=2
  evaluate=(--corruptions=none --latency_calls=10) tests=(tests/test_layers.py -k auto_formulation)
fi
step devices "$PY" -c "import jax; print(jax.__version__, jax.devices()); \
assert jax.devices()[0].platform == '$platform', jax.devices()"
step tests "$PY" -m pytest -q -p no:cacheprovider "${tests[@]}" -m "not slow and not multidevice"
bench=(--output_dir="$OUT/benchmark" --seeds=$seeds)
[[ -z $cpu ]] || bench+=(--tiny --throughput_configs=configs/mlp.py --speedrun_configs=configs/speedrun_mlp.py)
step benchmark "$PY" -m mnist_jax.benchmark "${bench[@]}"
for name in mlp cnn; do
  step "train_$name" "$PY" -m mnist_jax.main --config="configs/$name.py$quick" \
    --workdir="$OUT/runs/$name" "${size[@]}"
done
step evaluate "$PY" -m mnist_jax.evaluate --workdirs="$OUT/runs/mlp,$OUT/runs/cnn" \
  --output_dir="$OUT/comparison" "${evaluate[@]}"
[[ -n ${DRY_RUN:-} ]] || column -t -s $'\t' "$OUT/steps.tsv" >&2
exit $failed
