"""Run a study from experiments/ and aggregate it into tables and figures (the library behind
`python -m mnist_jax.sweep`).

Every trial is an ordinary training run in <output_dir>/trials/<name>/ (name = its overrides).
Running the same command again skips finished trials and resumes an interrupted one from its
checkpoint, so a killed sweep is finished by repeating the command. At the end:
<output_dir>/{results.csv,results.json,report.md,figures/}. The study format is described in
mnist_jax/studies/study.py (grids) and mnist_jax/studies/search.py (searches); the shipped
studies are listed in experiments/README.md.
"""

import contextlib
import dataclasses
import shlex
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from absl import logging

from mnist_jax.core import configuration
from mnist_jax.core.errors import ConfigError, UserError, WorkdirBusyError
from mnist_jax.evaluation import runner as eval_runner
from mnist_jax.studies import report as sweep_report
from mnist_jax.studies import search as search_lib
from mnist_jax.studies import search_report, workers
from mnist_jax.studies import study as study_lib
from mnist_jax.training import rundir, train
from mnist_jax.training.progress import hms


def load(spec: str) -> study_lib.Study | search_lib.Search:
    """`path/to/study.py[:variant]` or a shipped study's `NAME[:variant]` -> the Study (or
    Search) its `get_study(variant)` returns, its name and description filled in."""
    path_str, _, variant = configuration.resolve(spec, "study").partition(":")
    path = Path(path_str)
    module = configuration.import_file(path, "_study")
    if not hasattr(module, "get_study"):
        raise ConfigError(f"{path_str} defines no get_study(variant) function")
    study = configuration.call_file_function(path, module.get_study, variant)
    if not isinstance(study, study_lib.Study | search_lib.Search):
        raise ConfigError(
            f"{path_str}: get_study() returned {type(study).__name__}, not a Study or a Search"
        )
    name = study.name or path.stem + (f"_{variant}" if variant else "")
    doc = study.description or (module.__doc__ or "").strip()
    return dataclasses.replace(study, name=name, description=doc)


def trial_status(workdir: Path) -> str:
    """'done' (summary.json), 'partial' (a checkpoint or metrics to resume from) or 'pending'."""
    if (workdir / "summary.json").exists():
        return "done"
    if (workdir / "metrics.jsonl").exists() or any((workdir / "checkpoints").glob("*")):
        return "partial"
    return "pending"


class WorkersFailed(Exception):
    """A worker process of `jobs` > 1 failed or was interrupted; `status` is its exit status."""

    def __init__(self, status: int, output_dir: str):
        super().__init__(f"a worker exited with status {status}; see {output_dir}/logs/")
        self.status = status


@dataclasses.dataclass(frozen=True)
class CommandLine:
    """What the sweep's command line changes in the study file's study: `seeds` = K trains
    seeds 0..K-1 (0: the study's own), `overrides` are set in every trial, and `args` are the
    flags that say so, repeated to the worker processes."""

    seeds: int = 0
    overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    args: tuple[str, ...] = ()

    def apply(self, study: Any) -> Any:
        changes: dict[str, Any] = {"overrides": {**study.overrides, **self.overrides}}
        if self.seeds:
            if isinstance(study, search_lib.Search):
                raise UserError(f"--seeds={self.seeds}: a search retrains on its final_seeds; "
                                "--seeds applies to grid studies")  # fmt: skip
            changes["seeds"] = list(range(self.seeds))
        return dataclasses.replace(study, **changes)

    def command(self, spec: str, output_dir: str) -> str:
        """The sweep command that reproduces the study, for its report."""
        return shlex.join(["python", "-m", "mnist_jax.sweep", f"--study={spec}",
                           f"--output_dir={output_dir}", *self.args])  # fmt: skip


def check(spec: str, command_line: CommandLine = CommandLine()) -> int:
    """Loads the study and builds every trial's config (a bad one raises); the trial count."""
    study = command_line.apply(load(spec))
    if isinstance(study, search_lib.Search):
        return len(search_lib.expand(study)) + len(study.final_seeds)
    _evaluation_options(study)
    return len(study_lib.expand(study))


def run_study(
    spec: str, output_dir: str, *, dry_run: bool = False, aggregate_only: bool = False,
    jobs: int = 1, worker: int | None = None, command_line: CommandLine = CommandLine(),
) -> dict[str, Path] | list[tuple[study_lib.Trial, str]]:  # fmt: skip
    """Validates the whole study, then runs its missing trials and writes the results (or, for
    a study with `evaluate`, evaluates them all).

    With `jobs` > 1 the trials are trained by that many worker processes (studies/workers.py)
    and this one aggregates them; `worker` = k makes this process worker k, which trains and
    writes no results. Returns the paths written, or for a dry run the (trial, status) list.
    """
    if jobs < 1 or (worker is not None and not 0 <= worker < jobs):
        raise UserError(f"jobs={jobs}, worker={worker}: need jobs >= 1 and 0 <= worker < jobs")
    if Path(output_dir).exists() and not Path(output_dir).is_dir():
        raise UserError(f"--output_dir={output_dir} is a file; name a directory for the study")
    study = command_line.apply(load(spec))
    if isinstance(study, search_lib.Search):
        return run_search(study, spec, output_dir, dry_run=dry_run, aggregate_only=aggregate_only,
                          jobs=jobs, worker=worker, command_line=command_line)  # fmt: skip
    trials = study_lib.expand(study)  # raises ConfigError before anything is written
    options = _evaluation_options(study)
    out = Path(output_dir)
    statuses = [(t, trial_status(out / t.run_dir)) for t in trials]
    if dry_run:
        for i, (t, status) in enumerate(statuses, 1):
            print(f"{i:4d}/{len(trials)}  {status:8s} {t.run_dir}")
        done = sum(s == "done" for _, s in statuses)
        then = ", then one evaluation of them all" if study.evaluate is not None else ""
        print(f"study {study.name}: {len(trials)} trials, {done} done, in {out}/{then}")
        return statuses

    out.mkdir(parents=True, exist_ok=True)
    # One sweep or compare per output directory (its workers are its own processes).
    with _owning(out) if worker is None else contextlib.nullcontext():
        plan = {"study": spec, "name": study.name, "command_line": list(command_line.args),
                "trials": [t.run_dir for t in trials]}  # fmt: skip
        if worker is None:
            rundir.write_atomic(out / "study.json", rundir.to_json(plan, indent=2) + "\n")
        todo = [(i, t) for i, (t, status) in enumerate(statuses, 1) if status != "done"]
        logging.info(
            "Study %s: %d trials, %d already done, %d to run%s", study.name, len(trials),
            len(trials) - len(todo), len(todo), f" by {jobs} workers" if jobs > 1 else "",
        )  # fmt: skip
        start = time.perf_counter()
        if not aggregate_only and todo:
            if jobs > 1 and worker is None:
                _run_workers(spec, output_dir, jobs, command_line.args)
            else:
                _train_grid(study, len(trials), todo, out, worker, jobs)
            logging.info("Ran %d trials in %s", len(todo), hms(time.perf_counter() - start))
        if worker is not None:
            return {}

        summaries = {}
        for t in trials:
            summary = rundir.RunDir(out / t.run_dir).read_summary()
            if summary is not None:
                summaries[t.name] = summary
        missing = [t.run_dir for t in trials if t.name not in summaries]
        unfinished = None
        if missing and not aggregate_only:  # e.g. a trial another process held: never exit 0
            unfinished = UserError(
                f"study {study.name}: {len(missing)} of {len(trials)} trials have no result "
                f"(first: {out / missing[0]}); run the same command again to train them"
            )
        if options is not None:
            if unfinished:  # no comparison of part of the runs that would look finished
                raise unfinished
            return _evaluate_all(options, trials, summaries, out)
        command = command_line.command(spec, output_dir)
        paths = sweep_report.write_all(out, study, trials, summaries, command)
        logging.info("Results: %s", ", ".join(str(p) for p in paths.values()))
        if unfinished:  # the partial tables are written, and say which trials they lack
            raise unfinished
        return paths


@contextlib.contextmanager
def _owning(out: Path) -> Iterator[None]:
    """Holds the lock of the study's output directory: a second sweep or compare into it
    fails at once, naming the holder, instead of each taking a trial's lock from the other."""
    owner = rundir.RunDir(out, what="study output directory")
    owner.lock()
    try:
        yield
    finally:
        owner.release()


def _evaluation_options(study: study_lib.Study) -> eval_runner.Options | None:
    if study.evaluate is None:
        return None
    valid = [f.name for f in dataclasses.fields(eval_runner.Options)]
    if bad := [k for k in study.evaluate if k not in valid]:
        raise ConfigError(f"study {study.name!r}: evaluate option {bad[0]!r} does not exist; "
                          f"valid: {', '.join(valid)}")  # fmt: skip
    return eval_runner.Options(**study.evaluate)


def _evaluate_all(
    options: eval_runner.Options, trials: list[study_lib.Trial], summaries: dict[str, Any],
    out: Path,
) -> dict[str, Path]:  # fmt: skip
    """One evaluation of every trial: comparison.json, report.md and figures in `out`."""
    if missing := [t.run_dir for t in trials if t.name not in summaries]:
        raise UserError(f"{len(missing)} trials have not finished (e.g. {out / missing[0]}); "
                        "run the same command again to finish them")  # fmt: skip
    logging.info("Evaluating the %d runs into %s", len(trials), out)
    eval_runner.evaluate([str(out / t.run_dir) for t in trials], str(out), options)
    return {name: out / name for name in ("comparison.json", "report.md")}


def _run_workers(spec: str, output_dir: str, jobs: int, args: Sequence[str]) -> None:
    status = workers.run(spec, output_dir, jobs, args)
    if status != 0:
        raise WorkersFailed(status, output_dir)


def _train_grid(
    study: study_lib.Study, total: int, todo: list[tuple[int, study_lib.Trial]], out: Path,
    worker: int | None, jobs: int,
) -> None:  # fmt: skip
    """Trains the `todo` trials in order; a worker starts at its share and skips the trials
    another worker holds."""
    start = time.perf_counter()
    if worker is not None:
        todo = workers.rotated(todo, worker, jobs)
    for k, (index, trial) in enumerate(todo):
        if worker is not None and trial_status(out / trial.run_dir) == "done":
            logging.info("Trial %d was trained by another worker; next", index)
            continue
        elapsed = time.perf_counter() - start
        eta = f"ETA {hms(elapsed / k * (len(todo) - k))}" if k else "ETA -"
        logging.info(
            "Trial %d of %d (%d of %d this run): %s  elapsed %s  %s", index, total,
            k + 1, len(todo), trial.name, hms(elapsed), eta,
        )  # fmt: skip
        try:
            summary = train.train_and_evaluate(trial.config, str(out / trial.run_dir))
        except WorkdirBusyError:
            if worker is None:
                raise
            logging.info("Trial %d is being trained by another worker; next", index)
            continue
        logging.info(
            "Trial %d of %d done: %s = %.4f", index, total, study.metric,
            summary.get(study.metric, float("nan")),
        )  # fmt: skip


def run_search(
    search: search_lib.Search, spec: str, output_dir: str, *, dry_run: bool = False,
    aggregate_only: bool = False, jobs: int = 1, worker: int | None = None,
    command_line: CommandLine = CommandLine(),
) -> dict[str, Path] | list[tuple[search_lib.SearchTrial, str]]:  # fmt: skip
    """Validates every sampled config, runs the rungs, retrains the winner on fresh seeds, and
    writes the results (`jobs` and `worker` as in run_study). Returns the paths written, or for
    a dry run the (trial, status) list."""
    trials = search_lib.expand(search)  # raises ConfigError before anything is written
    out = Path(output_dir)
    trials_dir, final_dir = out / "trials", out / "final"
    sizes = search_lib.rung_sizes(search.trials, search.eta, len(search.rungs))
    plan = (
        f"search {search.name}: {search.trials} sampled configurations (seed {search.seed}); "
        f"rungs at {', '.join(map(str, search.rungs))} epochs with {', '.join(map(str, sizes))} "
        f"trials; the best retrained on seeds {list(search.final_seeds)}"
    )
    if dry_run:
        statuses = []
        for t in trials:
            status = search_lib.TrialState.read(trials_dir / t.name).status()
            statuses.append((t, status))
            values = "  ".join(f"{k}={study_lib.format_value(v)}" for k, v in t.point.items())
            print(f"{t.index + 1:4d}/{len(trials)}  {status:10s} {t.name}  {values}")
        for seed in search.final_seeds:
            print(f"   final  {trial_status(final_dir / f'seed={seed}'):10s} seed={seed}")
        print(f"{plan}; in {out}/")
        return statuses

    out.mkdir(parents=True, exist_ok=True)
    record = {
        "study": spec, "name": search.name, "rungs": list(search.rungs), "rung_sizes": sizes,
        "trials": {t.name: t.point for t in trials}, "final_seeds": list(search.final_seeds),
    }  # fmt: skip
    if worker is None:
        rundir.write_atomic(
            out / "search.json", rundir.to_json(record, indent=2, default=str) + "\n"
        )
    logging.info("%s%s", plan[0].upper() + plan[1:], f"; {jobs} workers" if jobs > 1 else "")
    start = time.perf_counter()
    if jobs > 1 and worker is None and not aggregate_only:
        _run_workers(spec, output_dir, jobs, command_line.args)
        aggregate_only = True  # the workers trained everything; read what they wrote
    shard = None if worker is None else (worker, jobs)
    rungs = search_lib.halve(
        search, trials, trials_dir, train_missing=not aggregate_only, shard=shard
    )
    best = search_lib.best_trial(search, rungs)
    finals = {}
    if best is not None:
        logging.info(
            "Best configuration (validation): %s %s", trials[best].name, trials[best].point
        )
        seeds = list(search.final_seeds)
        for seed in seeds if worker is None else workers.rotated(seeds, worker, jobs):
            workdir = final_dir / f"seed={seed}"
            if not aggregate_only and trial_status(workdir) != "done":
                logging.info("Retraining %s on fresh seed %d", trials[best].name, seed)
                config = search_lib.final_config(trials[best], seed)
                try:
                    train.train_and_evaluate(config, str(workdir))
                except WorkdirBusyError:
                    if worker is None:
                        raise
                    logging.info("Seed %d is being trained by another worker; next", seed)
            if (summary := rundir.RunDir(workdir).read_summary()) is not None:
                finals[seed] = summary
    logging.info("Search ran for %s", hms(time.perf_counter() - start))
    if worker is not None:
        return {}
    command = command_line.command(spec, output_dir)
    paths = search_report.write_all(out, search, trials, rungs, best, finals, command)
    logging.info("Results: %s", ", ".join(str(p) for p in paths.values()))
    return paths
