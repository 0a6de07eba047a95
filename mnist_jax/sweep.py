"""Run an ablation study from experiments/ and aggregate it into tables and figures.

  python -m mnist_jax.sweep --study=experiments/data_amount.py:reduced \\
      --output_dir=runs/data_amount_reduced
  python -m mnist_jax.sweep --study=experiments/dropout.py --output_dir=runs/dropout --dry_run

Every trial is an ordinary training run in <output_dir>/trials/<name>/ (name = its overrides).
Running the same command again skips finished trials and resumes an interrupted one from its
checkpoint, so a killed sweep is finished by repeating the command. At the end:
<output_dir>/{results.csv,results.json,report.md,figures/}. The study format is described in
mnist_jax/study.py; the shipped studies are listed in experiments/README.md.
"""

import json
import time
from pathlib import Path

from absl import app, flags, logging

from mnist_jax import cli, platform, rundir, sweep_report, train
from mnist_jax import study as study_lib

# Flags exist only when this module runs as the program, so that tests and the other
# binaries can import it as a library without defining (or requiring) its flags.
if __name__ == "__main__":
    _STUDY = flags.DEFINE_string(
        "study",
        None,
        "Study file, optionally with a variant after a colon: experiments/data_amount.py:reduced.",
    )
    _OUTPUT_DIR = flags.DEFINE_string(
        "output_dir", None, "Directory of the study: trials/<name>/ per trial, then the results."
    )
    _DRY_RUN = flags.DEFINE_bool(
        "dry_run",
        False,
        "List the trials (and which are done) without running or writing anything.",
    )
    _AGGREGATE_ONLY = flags.DEFINE_bool(
        "aggregate_only", False, "Run nothing; aggregate whichever trials have finished so far."
    )
    flags.mark_flags_as_required(["study", "output_dir"])


def trial_status(workdir: Path) -> str:
    """'done' (summary.json), 'partial' (a checkpoint or metrics to resume from) or 'pending'."""
    if (workdir / "summary.json").exists():
        return "done"
    if (workdir / "metrics.jsonl").exists() or any((workdir / "checkpoints").glob("*")):
        return "partial"
    return "pending"


def _hms(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m // 60}h{m % 60:02d}m{s:02d}s" if m >= 60 else f"{m}m{s:02d}s"


def run_study(
    spec: str, output_dir: str, *, dry_run: bool = False, aggregate_only: bool = False
) -> dict[str, Path] | list[tuple[study_lib.Trial, str]]:
    """Validates the whole study, then runs its missing trials and writes the results.

    Returns the paths written, or for a dry run the (trial, status) list.
    """
    study = study_lib.load(spec)
    trials = study_lib.expand(study)  # raises ConfigError before anything is written
    out = Path(output_dir)
    statuses = [(t, trial_status(out / "trials" / t.name)) for t in trials]
    if dry_run:
        for i, (t, status) in enumerate(statuses, 1):
            print(f"{i:4d}/{len(trials)}  {status:8s} {t.name}")
        done = sum(s == "done" for _, s in statuses)
        print(f"study {study.name}: {len(trials)} trials, {done} done, in {out}/trials/")
        return statuses

    out.mkdir(parents=True, exist_ok=True)
    plan = {"study": spec, "name": study.name, "trials": [t.name for t in trials]}
    (out / "study.json").write_text(json.dumps(plan, indent=2) + "\n")
    todo = [(i, t) for i, (t, status) in enumerate(statuses, 1) if status != "done"]
    logging.info(
        "Study %s: %d trials, %d already done, %d to run", study.name, len(trials),
        len(trials) - len(todo), len(todo),
    )  # fmt: skip
    start = time.perf_counter()
    if not aggregate_only:
        for k, (index, trial) in enumerate(todo):
            elapsed = time.perf_counter() - start
            eta = f"ETA {_hms(elapsed / k * (len(todo) - k))}" if k else "ETA -"
            logging.info(
                "Trial %d of %d (%d of %d this run): %s  elapsed %s  %s", index, len(trials),
                k + 1, len(todo), trial.name, _hms(elapsed), eta,
            )  # fmt: skip
            summary = train.train_and_evaluate(trial.config, str(out / "trials" / trial.name))
            logging.info(
                "Trial %d of %d done: %s = %.4f", index, len(trials), study.metric,
                summary.get(study.metric, float("nan")),
            )  # fmt: skip
        logging.info("Ran %d trials in %s", len(todo), _hms(time.perf_counter() - start))

    summaries = {}
    for t in trials:
        summary = rundir.RunDir(out / "trials" / t.name).read_summary()
        if summary is not None:
            summaries[t.name] = summary
    command = f"python -m mnist_jax.sweep --study={spec} --output_dir={output_dir}"
    paths = sweep_report.write_all(out, study, trials, summaries, command)
    logging.info("Results: %s", ", ".join(str(p) for p in paths.values()))
    return paths


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    with platform.user_errors_exit():
        if not _DRY_RUN.value:
            platform.initialize()
        run_study(
            _STUDY.value,
            _OUTPUT_DIR.value,
            dry_run=_DRY_RUN.value,
            aggregate_only=_AGGREGATE_ONLY.value,
        )


if __name__ == "__main__":
    cli.run(main)
