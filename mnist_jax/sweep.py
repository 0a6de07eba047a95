"""Run a study from experiments/ (a grid or a hyperparameter search) and aggregate it into
tables and figures.

  python -m mnist_jax.sweep --study=data_amount:reduced --output_dir=runs/data_amount_reduced
  python -m mnist_jax.sweep --study=dropout --output_dir=runs/dropout --dry_run
  python -m mnist_jax.sweep --study=search_mlp:reduced --output_dir=runs/search
  python -m mnist_jax.sweep --study=path/to/my_study.py --output_dir=runs/mine --jobs=2

--study is a shipped study's name (experiments/NAME.py in the repository: compare, dropout,
robustness, ...) or the path of a study file of your own, either with an optional variant.

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

import dataclasses
import re
import sys
from pathlib import Path

from absl import app, flags
from ml_collections import config_flags

from mnist_jax.configs import default
from mnist_jax.core import cli, configuration, platform
from mnist_jax.core.checks import suggest
from mnist_jax.core.errors import UserError
from mnist_jax.launcher import commands, slurm, subcommands
from mnist_jax.studies import runner
from mnist_jax.training import guards, rundir

_STUDY = flags.DEFINE_string(
    "study",
    None,
    "A shipped study's name or a study file, optionally with a variant after a colon: "
    "data_amount:reduced, path/to/study.py:reduced.",
)
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir",
    "",
    "Directory of the study: trials/<name>/ per trial, then the results (default: runs/<the "
    "study's name>, e.g. runs/dropout_reduced).",
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
_SLURM = flags.DEFINE_bool(
    "slurm",
    False,
    "Submit the study to SLURM instead: a job array of --workers tasks that share the trials "
    "(each trial trained once, the same bits as here), then one job after them that trains "
    "any trial left unfinished and writes the results. Submit from the repository; "
    "--output_dir must be on a filesystem every node shares. 'launch.sh status OUTPUT_DIR' "
    "shows the jobs.",
)
_WORKERS = flags.DEFINE_integer("workers", 2, "With --slurm: array tasks.", lower_bound=1)
for _option in subcommands.SLURM_OPTIONS:
    if _option.name in subcommands.STUDY_SLURM_OPTIONS:
        dataclasses.replace(_option, help=f"With --slurm: {_option.help}.").define(flags.FLAGS)
flags.mark_flags_as_required(["study"])
_CONFIG_ARG = re.compile(r"^--?(no)?config\.([^=]+)")
_config_args: list[str] = []  # the --config.KEY=VALUE arguments, set aside by parse_command_line


def parse_command_line(argv: list[str]) -> list[str]:
    """absl's flags, with --config.KEY=VALUE (or --config.KEY VALUE) set aside: they are
    parsed against configs/default.py by `command_line`, once the other flags are valid."""
    rest, i = [argv[0]], 1
    while i < len(argv):
        arg = argv[i]
        if _CONFIG_ARG.match(arg) and "=" not in arg and i + 1 < len(argv):
            _config_args.append(f"{arg}={argv[i + 1]}")
            i += 2
            continue
        (_config_args if _CONFIG_ARG.match(arg) else rest).append(arg)
        i += 1
    return cli.parse_flags(rest)


def command_line() -> runner.CommandLine:
    """--seeds and the --config.* arguments, typed as configs/default.py types them, for the
    study and its worker processes; an unknown key or a bad value is one line."""
    base = default.get_config()
    keys = rundir.flatten(base.to_dict())
    for arg in _config_args:
        key = _CONFIG_ARG.match(arg).group(2)
        if key not in keys:
            hint = suggest(key, keys) or " (configs/default.py lists every key)"
            raise UserError(f"--config.{key}: the config has no key {key!r}{hint}")
    values = flags.FlagValues()
    argv = [sys.argv[0], *_config_args]
    try:
        config_flags.DEFINE_config_dict("config", base, flag_values=values, sys_argv=argv)
        values(argv)
        overrides = config_flags.get_override_values(values["config"])
    except Exception as e:  # a value the key's type does not accept
        raise UserError(f"{' '.join(_config_args)}: {str(e).strip().splitlines()[0]}") from None
    args = [*_config_args, *([f"--seeds={_SEEDS.value}"] if _SEEDS.value else [])]
    return runner.CommandLine(seeds=_SEEDS.value, overrides=overrides, args=tuple(args))


def submit(spec: str, output_dir: str, line: runner.CommandLine) -> None:
    """The study as a SLURM job array and its final job, after checking every trial's config."""
    trials = runner.check(spec, line)
    job = slurm.SlurmJob(
        **{name: flags.FLAGS[name].value for name in subcommands.STUDY_SLURM_OPTIONS}
    )
    site = commands.Site.here()
    workers = min(_WORKERS.value, trials)
    worker = slurm.worker_script(site, job, spec, output_dir, line.args, workers)
    final = slurm.final_script(site, job, spec, output_dir, line.args)
    ids = slurm.submit_study(Path(output_dir), workers, worker, final, dry_run=_DRY_RUN.value)
    if ids[0]:
        print(f"Submitted {trials} trials: worker array {ids[0]} ({workers} tasks), then job "
              f"{ids[1]} to finish and aggregate; logs in {output_dir}/logs/; "
              f"'./launch.sh status {output_dir}' shows them")  # fmt: skip


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    with platform.user_errors_exit():
        configuration.resolve(_STUDY.value, "study")  # a bad name: one line, before JAX starts
        output_dir = _OUTPUT_DIR.value or f"runs/{runner.load(_STUDY.value).name}"
        if _SLURM.value:
            submit(_STUDY.value, output_dir, command_line())
            return
        if not _DRY_RUN.value:
            platform.initialize()
        try:
            runner.run_study(
                _STUDY.value,
                output_dir,
                dry_run=_DRY_RUN.value,
                aggregate_only=_AGGREGATE_ONLY.value,
                jobs=_JOBS.value,
                worker=_WORKER.value,
                command_line=command_line(),
            )
        except guards.Preempted as e:  # a worker's trial: checkpoint saved
            cli.exit_with(f"preempted: {e}", e.exit_status)
        except runner.WorkersFailed as e:
            interrupted = e.status == cli.EXIT_INTERRUPTED
            cli.exit_with("interrupted" if interrupted else f"error: {e}", e.status)


if __name__ == "__main__":
    cli.run(main, flags_parser=parse_command_line)
