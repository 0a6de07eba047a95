#!/usr/bin/env bash
# One entry point for people and CI. Creates .venv and installs the project on first use.
#
#   ./launch.sh compare [OUTDIR] [--quick] [--config.key=value ...]
#                                             the main job: train the MLP and the CNN (default
#                                             configs) into OUTDIR/{mlp,cnn} (default runs/compare),
#                                             then evaluate both: OUTDIR/comparison.json, report.md,
#                                             *.png. Again: reuses finished runs, resumes interrupted
#                                             ones. --quick: 1 epoch on 10% of the data
#   ./launch.sh test [pytest args]            set up, then run the test suite
#   ./launch.sh train CONFIG WORKDIR [--config.key=value ...]
#                                             train one model (python -m mnist_jax.main)
#   ./launch.sh sweep STUDY OUTDIR [--dry_run] run an experiments/ study, resumably, and aggregate
#                                             it (python -m mnist_jax.sweep; experiments/README.md)
#   ./launch.sh setup                         only create .venv and install
#   ./launch.sh benchmark [flags]             speed benchmark (python -m mnist_jax.benchmark)
#   ./launch.sh local CONFIG WORKDIR          train in one process on every local device
#   ./launch.sh multiprocess N CONFIG WORKDIR train in N processes on this machine (CPU devices,
#                                             JAX CPU collectives): the multi-host path, locally
#   ./launch.sh slurm CONFIG WORKDIR --nodes=N --gpus_per_node=G ...
#                                             submit an sbatch job: one process per GPU (srun)
#   ./launch.sh tpu CONFIG WORKDIR --name=TPU --zone=ZONE
#                                             run on every worker of a Cloud TPU VM pod (gcloud)
#   (each of these takes --help, --dry_run and trailing --config.key=value overrides;
#    docs/multihost.md explains multi-host runs and their failure timeout)
#
# Environment: MNIST_DIR (directory of the four MNIST .gz files; else they are downloaded),
# PYTHON (interpreter used to create .venv, default python3; needs 3.11+), VENV (the venv,
# default ./.venv), SKIP_SETUP=1 (use $VENV as it is: no creation, no install).
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
VENV=${VENV:-$ROOT/.venv}
PY=$VENV/bin/python

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

setup() {
  [[ -n ${SKIP_SETUP:-} ]] && return 0
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

# --- Launch helpers (local, multiprocess, slurm, tpu) ---------------------------------------

# parse_opts NAME... -- ARGS...: sets OPT_<name> from --name=value / --name value for each
# NAME (a trailing '!' marks a boolean flag, e.g. dry_run!), DRY_RUN, and REST (the other
# arguments, passed on to mnist_jax.main). --help/-h sets OPT_help.
parse_opts() {
  local -a names=()
  while [[ $1 != -- ]]; do names+=("$1"); shift; done
  shift
  REST=() OPT_help=
  local name
  for name in "${names[@]}"; do printf -v "OPT_${name%!}" '%s' "${OPT_DEFAULT[${name%!}]:-}"; done
  while [[ $# -gt 0 ]]; do
    local arg=$1 matched=
    [[ $arg == --help || $arg == -h ]] && OPT_help=1 && shift && continue
    for name in "${names[@]}"; do
      local bare=${name%!}
      if [[ $name == *! && $arg == "--$bare" ]]; then
        printf -v "OPT_$bare" 1; matched=1
      elif [[ $name != *! && $arg == "--$bare="* ]]; then
        printf -v "OPT_$bare" '%s' "${arg#*=}"; matched=1
      elif [[ $name != *! && $arg == "--$bare" ]]; then
        [[ $# -ge 2 ]] || { echo "error: --$bare needs a value" >&2; exit 2; }
        printf -v "OPT_$bare" '%s' "$2"; shift; matched=1
      fi
      [[ -n $matched ]] && break
    done
    [[ -z $matched ]] && REST+=("$arg")
    shift
  done
}
declare -A OPT_DEFAULT=()

# quoted ARGS...: the arguments as one shell-ready line.
quoted() { local out; printf -v out '%q ' "$@"; echo "${out% }"; }

# squoted STRING: STRING in single quotes, for the shell (readable for long commands).
squoted() { local q="'\\''"; echo "'${1//\'/$q}'"; }

# positive_int NAME VALUE: exit 2 unless VALUE is a positive integer.
positive_int() {
  [[ $2 =~ ^[1-9][0-9]*$ ]] || { echo "error: $1 must be a positive integer, got '$2'" >&2; exit 2; }
}

# free_port: a TCP port nobody listens on now (for the coordinator of a local multi-process run).
free_port() {
  "$PY" -c 'import socket; s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])' \
    2>/dev/null || echo $((20000 + RANDOM % 20000))
}

# need_config_workdir USAGE ARGS...: CONFIG and WORKDIR are the first two of REST.
need_config_workdir() {
  if [[ -n $OPT_help || ${#REST[@]} -lt 2 || ${REST[0]} == -* || ${REST[1]} == -* ]]; then
    echo "$1" >&2
    [[ -n $OPT_help ]] && exit 0 || exit 2
  fi
  CONFIG=${REST[0]} WORKDIR=${REST[1]}
  OVERRIDES=("${REST[@]:2}")
}

# run_processes N CPU_DEVICES PORT: start N local processes of one run and wait for all of them.
# Process 0 prints to this console; process i > 0 logs (warnings and errors only) to
# WORKDIR/logs/process_<i>.log. A process that dies makes the others exit within
# --heartbeat_timeout seconds (docs/multihost.md); the exit status is that of the first failure.
run_processes() {
  local n=$1 devices=$2 port=$3 i status=0 rc
  local -a pids=() cmd
  [[ -n $OPT_dry_run ]] && quoted mkdir -p "$WORKDIR/logs" || mkdir -p "$WORKDIR/logs"
  for ((i = 0; i < n; i++)); do
    cmd=(env JAX_PLATFORMS=cpu "XLA_FLAGS=--xla_force_host_platform_device_count=$devices"
      "MNIST_JAX_COORDINATOR=localhost:$port" "MNIST_JAX_NUM_PROCESSES=$n" "MNIST_JAX_PROCESS_ID=$i"
      "$PY" -m mnist_jax.main --config="$CONFIG" --workdir="$WORKDIR" "${OVERRIDES[@]}")
    if [[ -n $OPT_dry_run ]]; then
      ((i == 0)) && echo "$(quoted "${cmd[@]}") &" ||
        echo "$(quoted "${cmd[@]}") > $(quoted "$WORKDIR/logs/process_$i.log") 2>&1 &"
      continue
    fi
    if ((i == 0)); then "${cmd[@]}" & else "${cmd[@]}" >"$WORKDIR/logs/process_$i.log" 2>&1 & fi
    pids+=($!)
  done
  [[ -n $OPT_dry_run ]] && echo wait && return 0
  trap 'kill "${pids[@]}" 2>/dev/null; exit 130' INT TERM
  for ((i = 0; i < n; i++)); do
    wait "${pids[i]}" && rc=0 || rc=$?
    if ((rc != 0)); then
      echo "launch.sh: process $i exited with status $rc" >&2
      ((i > 0)) && tail -n 5 "$WORKDIR/logs/process_$i.log" | sed "s/^/  [process $i] /" >&2
      ((status == 0)) && status=$rc
    fi
  done
  trap - INT TERM
  return $status
}

# slurm_script: the sbatch script of a SLURM launch (options in OPT_*).
slurm_script() {
  local out=$WORKDIR/slurm-%j.out
  echo "#!/bin/bash"
  echo "#SBATCH --job-name=$OPT_job_name"
  echo "#SBATCH --nodes=$OPT_nodes"
  echo "#SBATCH --ntasks-per-node=$OPT_gpus_per_node"
  echo "#SBATCH --gpus-per-node=$OPT_gpus_per_node"
  echo "#SBATCH --cpus-per-task=$OPT_cpus_per_task"
  echo "#SBATCH --time=$OPT_time"
  [[ -n $OPT_partition ]] && echo "#SBATCH --partition=$OPT_partition"
  [[ -n $OPT_account ]] && echo "#SBATCH --account=$OPT_account"
  echo "#SBATCH --output=$out"
  echo "# One process per GPU; jax.distributed reads the SLURM_* variables srun sets."
  echo "set -euo pipefail"
  echo "cd $(quoted "$ROOT")"
  [[ -n ${MNIST_DIR:-} ]] && echo "export MNIST_DIR=$(quoted "$MNIST_DIR")"
  echo "export MNIST_JAX_HEARTBEAT_TIMEOUT=$OPT_heartbeat_timeout"
  echo "srun --kill-on-bad-exit=1 $(quoted "$PY" -u -m mnist_jax.main --config="$CONFIG" \
    --workdir="$WORKDIR" "${OVERRIDES[@]}")"
}

cmd=${1:-help}
[[ $# -gt 0 ]] && shift
case $cmd in
  setup) setup ;;
  compare)
    outdir='' extra=() quick=''
    for arg in "$@"; do
      case $arg in
        --quick) extra+=(--config.num_epochs=1 --config.data.train_fraction=0.1) quick=1 ;;
        --config.*) extra+=("$arg") ;;
        -h | --help)
          echo "usage: ./launch.sh compare [OUTDIR] [--quick] [--config.key=value ...]" >&2
          echo "  trains configs/mlp.py and configs/cnn.py into OUTDIR/{mlp,cnn} (default" >&2
          echo "  runs/compare, or runs/compare_quick with --quick), then writes" >&2
          echo "  OUTDIR/comparison.json, report.md and figures (python -m mnist_jax.evaluate)" >&2
          exit 0
          ;;
        -*) echo "error: unknown option '$arg' for compare (valid: --quick, --config.*)" >&2; exit 2 ;;
        *) outdir=$arg ;;
      esac
    done
    outdir=${outdir:-runs/compare${quick:+_quick}}
    setup
    for model in mlp cnn; do
      "$PY" -m mnist_jax.main --config="configs/$model.py" --workdir="$outdir/$model" "${extra[@]}"
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
  local)
    OPT_DEFAULT=([cpu_devices]=)
    parse_opts cpu_devices dry_run! -- "$@"
    need_config_workdir "usage: ./launch.sh local CONFIG WORKDIR [--cpu_devices=N] [--dry_run] [--config.key=value ...]
  One process on every device of this machine (GPUs, TPUs, else the CPU).
  --cpu_devices=N  run on N simulated CPU devices instead (XLA_FLAGS), e.g. to compare with
                   'multiprocess'
  --dry_run        print the command instead of running it
  e.g. ./launch.sh local configs/mlp.py runs/mlp --cpu_devices=4 --config.num_epochs=3"
    cmd=("$PY" -m mnist_jax.main --config="$CONFIG" --workdir="$WORKDIR" "${OVERRIDES[@]}")
    if [[ -n $OPT_cpu_devices ]]; then
      positive_int --cpu_devices "$OPT_cpu_devices"
      cmd=(env JAX_PLATFORMS=cpu "XLA_FLAGS=--xla_force_host_platform_device_count=$OPT_cpu_devices" "${cmd[@]}")
    fi
    [[ -n $OPT_dry_run ]] && { quoted "${cmd[@]}"; exit 0; }
    setup
    exec "${cmd[@]}"
    ;;
  multiprocess)
    OPT_DEFAULT=([cpu_devices]=2 [port]= [heartbeat_timeout]=60)
    parse_opts cpu_devices port heartbeat_timeout dry_run! -- "$@"
    nproc_=${REST[0]:-}
    [[ -n $OPT_help ]] || positive_int "the number of processes N" "$nproc_"
    REST=("${REST[@]:1}")
    need_config_workdir "usage: ./launch.sh multiprocess N CONFIG WORKDIR [--cpu_devices=K] [--port=P]
         [--heartbeat_timeout=S] [--dry_run] [--config.key=value ...]
  N processes on this machine, each with K CPU devices (default 2), connected by
  jax.distributed (coordinator localhost:P, default a free port) and JAX's CPU collectives
  (gloo): the multi-host code path without a cluster. Same numbers as one process with N*K
  devices. Process 0 prints here; the others log warnings to WORKDIR/logs/process_<i>.log.
  If one process dies the others exit with an error within S seconds (default 60).
  --dry_run  print the N commands instead of running them
  e.g. ./launch.sh multiprocess 2 configs/mlp.py runs/mlp_2proc --config.num_epochs=3"
    positive_int --cpu_devices "$OPT_cpu_devices"
    positive_int --heartbeat_timeout "$OPT_heartbeat_timeout"
    [[ -z $OPT_dry_run ]] && setup
    port=${OPT_port:-$(free_port)}
    positive_int --port "$port"
    export MNIST_JAX_HEARTBEAT_TIMEOUT=$OPT_heartbeat_timeout
    [[ -n $OPT_dry_run ]] && echo "export MNIST_JAX_HEARTBEAT_TIMEOUT=$OPT_heartbeat_timeout"
    run_processes "$nproc_" "$OPT_cpu_devices" "$port"
    ;;
  slurm)
    OPT_DEFAULT=([nodes]=1 [gpus_per_node]=8 [time]=01:00:00 [partition]= [account]=
      [cpus_per_task]=8 [job_name]=mnist_jax [heartbeat_timeout]=120)
    parse_opts nodes gpus_per_node time partition account cpus_per_task job_name \
      heartbeat_timeout dry_run! -- "$@"
    need_config_workdir "usage: ./launch.sh slurm CONFIG WORKDIR [--nodes=N] [--gpus_per_node=G] [--time=HH:MM:SS]
         [--partition=P] [--account=A] [--cpus_per_task=C] [--job_name=NAME]
         [--heartbeat_timeout=S] [--dry_run] [--config.key=value ...]
  Submits an sbatch job of N nodes (default 1) x G GPUs (default 8): one process per GPU,
  started by srun; jax.distributed finds its peers from the SLURM environment. WORKDIR must be
  on a filesystem every node shares; the job log is WORKDIR/slurm-<jobid>.out. A dead process
  stops the others within S seconds (default 120), and srun --kill-on-bad-exit ends the step.
  --dry_run  print the sbatch script and the sbatch command instead of submitting
  e.g. ./launch.sh slurm configs/cnn.py /shared/runs/cnn --nodes=2 --gpus_per_node=4 \\
         --partition=gpu --time=00:30:00"
    for opt in nodes gpus_per_node cpus_per_task heartbeat_timeout; do
      v=OPT_$opt
      positive_int "--$opt" "${!v}"
    done
    [[ $OPT_time =~ ^([0-9]+-)?[0-9]+(:[0-9]{2}){0,2}$ ]] || {
      echo "error: --time must look like HH:MM:SS, MM or D-HH:MM:SS, got '$OPT_time'" >&2
      exit 2
    }
    script=$WORKDIR/slurm_job.sbatch
    if [[ -n $OPT_dry_run ]]; then
      echo "# $script"
      slurm_script
      echo "# submit with:"
      quoted sbatch "$script"
      exit 0
    fi
    setup
    mkdir -p "$WORKDIR"
    slurm_script >"$script"
    exec sbatch "$script"
    ;;
  tpu)
    OPT_DEFAULT=([name]= [zone]= [project]= [remote_dir]=mnist_jax [mnist_dir]= [heartbeat_timeout]=120)
    parse_opts name zone project remote_dir mnist_dir heartbeat_timeout no_copy! dry_run! -- "$@"
    need_config_workdir "usage: ./launch.sh tpu CONFIG WORKDIR --name=TPU --zone=ZONE [--project=P] [--remote_dir=DIR]
         [--mnist_dir=DIR] [--no_copy] [--heartbeat_timeout=S] [--dry_run] [--config.key=value ...]
  Runs the same command on every worker of the Cloud TPU VM (pod slice) TPU with
  'gcloud compute tpus tpu-vm ssh --worker=all': copies this checkout (git HEAD) to ~/DIR
  (default ~/mnist_jax; --no_copy if it is already there), creates its .venv with jax[tpu],
  and trains with --distributed=on (JAX finds the workers from the TPU metadata). WORKDIR must
  be a directory every worker shares (e.g. an NFS/Filestore mount). --mnist_dir: the MNIST
  files on the workers (default: each worker downloads them).
  --dry_run  print the gcloud commands instead of running them
  e.g. ./launch.sh tpu configs/cnn.py /mnt/shared/runs/cnn --name=my-v4-32 --zone=us-central2-b"
    [[ -n $OPT_name && -n $OPT_zone ]] || { echo "error: tpu needs --name=TPU and --zone=ZONE" >&2; exit 2; }
    positive_int --heartbeat_timeout "$OPT_heartbeat_timeout"
    gcloud_args=("$OPT_name" --zone="$OPT_zone")
    [[ -n $OPT_project ]] && gcloud_args+=(--project="$OPT_project")
    tarball=${TMPDIR:-/tmp}/mnist_jax-$(git rev-parse --short HEAD 2>/dev/null || echo src).tar.gz
    dir=$OPT_remote_dir
    env_vars="MNIST_JAX_DISTRIBUTED=on MNIST_JAX_HEARTBEAT_TIMEOUT=$OPT_heartbeat_timeout"
    [[ -n $OPT_mnist_dir ]] && env_vars+=" MNIST_DIR=$(quoted "$OPT_mnist_dir")"
    remote="set -euo pipefail; "
    [[ -z $OPT_no_copy ]] && remote+="mkdir -p ~/$dir && tar -xzf ~/$(basename "$tarball") -C ~/$dir; "
    remote+="cd ~/$dir && PYTHON=python3 ./launch.sh setup"
    remote+=' && .venv/bin/pip install --quiet "jax[tpu]==$(.venv/bin/python -c "import jax; print(jax.__version__)")"'
    remote+=" && $env_vars .venv/bin/python -u -m mnist_jax.main $(quoted --config="$CONFIG" --workdir="$WORKDIR" "${OVERRIDES[@]}")"
    copy=(git archive --format=tar.gz -o "$tarball" HEAD)
    scp=(gcloud compute tpus tpu-vm scp "$tarball" "$OPT_name:~/" --worker=all --zone="$OPT_zone")
    [[ -n $OPT_project ]] && scp+=(--project="$OPT_project")
    ssh=(gcloud compute tpus tpu-vm ssh "${gcloud_args[@]}" --worker=all --command="$remote")
    if [[ -n $OPT_dry_run ]]; then
      [[ -z $OPT_no_copy ]] && quoted "${copy[@]}" && quoted "${scp[@]}"
      echo "$(quoted "${ssh[@]:0:${#ssh[@]}-1}") --command=$(squoted "$remote")"
      exit 0
    fi
    if [[ -z $OPT_no_copy ]]; then
      git diff --quiet HEAD 2>/dev/null || echo "launch.sh: note: uncommitted changes are not copied (git HEAD is)" >&2
      "${copy[@]}" && "${scp[@]}"
    fi
    exec "${ssh[@]}"
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
  benchmark)
    setup
    exec "$PY" -m mnist_jax.benchmark "$@"
    ;;
  help | -h | --help) usage ;;
  *)
    echo "error: unknown command '$cmd'" >&2
    usage >&2
    exit 2
    ;;
esac
