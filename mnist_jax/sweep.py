"""Run a study from experiments/ (a grid or a hyperparameter search) and aggregate it into
tables and figures.

  python -m mnist_jax.sweep --study=experiments/data_amount.py:reduced \
      --output_dir=runs/data_amount_reduced
  python -m mnist_jax.sweep --study=experiments/dropout.py --output_dir=runs/dropout --dry_run
  python -m mnist_jax.sweep --study=experiments/search_mlp.py:reduced --output_dir=runs/search
  python -m mnist_jax.sweep --study=experiments/regularization.py --output_dir=runs/reg --jobs=2

Every trial is an ordinary training run in <output_dir>/trials/<name>/ (name = its overrides,
or trial=007 in a search). Running the same command again skips finished trials and resumes an
interrupted one from its checkpoint, so a killed sweep or search is finished by repeating the
command. `--jobs=N` trains N trials at once in worker processes (the same bits as one at a
time); `--seeds=K` and `--config.KEY=VALUE` change every trial. A study with an evaluation
(experiments/compare.py, what `./launch.sh compare` runs) ends in comparison.json, report.md and
figures instead of the grid's tables. A search trains random configurations rung by rung
(successive halving, selected on validation data) and retrains the winner on fresh seeds
(<output_dir>/final/seed=N/). At the end: <output_dir>/{results.csv,results.json,report.md,
figures/}. The formats are described in mnist_jax/studies/study.py and search.py; the shipped
studies in experiments/README.md.
"""

import sys

from absl import app, flags
from ml_collections import config_flags

from mnist_jax import cli, platform
from mnist_jax.configs import default
from mnist_jax.studies import runner

_STUDY = flags.DEFINE_string(
    "study",
    None,
    "Study file, optionally with a variant after a colon: experiments/data_amount.py:reduced.",
)
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", None, "Directory of the study: trials/<name>/ per trial, then the results."
)
_DRY_RUN = flags.DEFINE_bool(
    "dry_run", False, "List the trials (and which are done) without running or writing anything."
)
_AGGREGATE_ONLY = flags.DEFINE_bool(
    "aggregate_only", False, "Run nothing; aggregate whichever trials have finished so far."
)
_JOBS = flags.DEFINE_integer(
    "jobs",
    1,
    "Trials trained at once, each in a worker process logging to <output_dir>/logs/; the "
    "results are the same bits as with 1. On a CPU-only machine 2 keeps the cores busier than "
    "one process does; with one GPU keep 1.",
    lower_bound=1,
)
_WORKER = flags.DEFINE_integer(
    "worker",
    None,
    "Internal, set by --jobs: this process is worker K of --jobs; it trains, and writes no "
    "results.",
    lower_bound=0,
)
_SEEDS = flags.DEFINE_integer(
    "seeds",
    0,
    "Train seeds 0..K-1 in place of the study's own seeds (0: the study's).",
    lower_bound=0,
)
_CONFIG = config_flags.DEFINE_config_dict(
    "config",
    default.get_config(),
    "--config.KEY=VALUE (any key of configs/default.py): set in every trial, over the study's "
    "own overrides.",
)
flags.mark_flags_as_required(["study", "output_dir"])


def command_line() -> runner.CommandLine:
    """The --seeds and --config.* flags as given, for the study and its worker processes."""
    overrides = config_flags.get_override_values(flags.FLAGS["config"])
    args = [a for a in sys.argv[1:] if a.startswith(("--config.", "-config."))]
    if _SEEDS.value:
        args.append(f"--seeds={_SEEDS.value}")
    return runner.CommandLine(seeds=_SEEDS.value, overrides=overrides, args=tuple(args))


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    with platform.user_errors_exit():
        if not _DRY_RUN.value:
            platform.initialize()
        try:
            runner.run_study(
                _STUDY.value,
                _OUTPUT_DIR.value,
                dry_run=_DRY_RUN.value,
                aggregate_only=_AGGREGATE_ONLY.value,
                jobs=_JOBS.value,
                worker=_WORKER.value,
                command_line=command_line(),
            )
        except runner.WorkersFailed as e:
            interrupted = e.status == cli.EXIT_INTERRUPTED
            cli.exit_with("interrupted" if interrupted else f"error: {e}", e.status)


if __name__ == "__main__":
    cli.run(main)
