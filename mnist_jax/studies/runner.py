"""Run a study from experiments/ and aggregate it into tables and figures (the library behind
`python -m mnist_jax.sweep`).

Every trial is an ordinary training run in <output_dir>/trials/<name>/ (name = its overrides).
Running the same command again skips finished trials and resumes an interrupted one from its
checkpoint, so a killed sweep is finished by repeating the command. At the end:
<output_dir>/{results.csv,results.json,report.md,figures/}. The study format is described in
mnist_jax/studies/study.py; the shipped studies are listed in experiments/README.md.
"""

import time
from pathlib import Path

from absl import logging

from mnist_jax.studies import report as sweep_report
from mnist_jax.studies import study as study_lib
from mnist_jax.training import rundir, train
from mnist_jax.training.progress import hms


def trial_status(workdir: Path) -> str:
    """'done' (summary.json), 'partial' (a checkpoint or metrics to resume from) or 'pending'."""
    if (workdir / "summary.json").exists():
        return "done"
    if (workdir / "metrics.jsonl").exists() or any((workdir / "checkpoints").glob("*")):
        return "partial"
    return "pending"


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
    rundir.write_atomic(out / "study.json", rundir.to_json(plan, indent=2) + "\n")
    todo = [(i, t) for i, (t, status) in enumerate(statuses, 1) if status != "done"]
    logging.info(
        "Study %s: %d trials, %d already done, %d to run", study.name, len(trials),
        len(trials) - len(todo), len(todo),
    )  # fmt: skip
    start = time.perf_counter()
    if not aggregate_only:
        for k, (index, trial) in enumerate(todo):
            elapsed = time.perf_counter() - start
            eta = f"ETA {hms(elapsed / k * (len(todo) - k))}" if k else "ETA -"
            logging.info(
                "Trial %d of %d (%d of %d this run): %s  elapsed %s  %s", index, len(trials),
                k + 1, len(todo), trial.name, hms(elapsed), eta,
            )  # fmt: skip
            summary = train.train_and_evaluate(trial.config, str(out / "trials" / trial.name))
            logging.info(
                "Trial %d of %d done: %s = %.4f", index, len(trials), study.metric,
                summary.get(study.metric, float("nan")),
            )  # fmt: skip
        logging.info("Ran %d trials in %s", len(todo), hms(time.perf_counter() - start))

    summaries = {}
    for t in trials:
        summary = rundir.RunDir(out / "trials" / t.name).read_summary()
        if summary is not None:
            summaries[t.name] = summary
    command = f"python -m mnist_jax.sweep --study={spec} --output_dir={output_dir}"
    paths = sweep_report.write_all(out, study, trials, summaries, command)
    logging.info("Results: %s", ", ".join(str(p) for p in paths.values()))
    return paths
