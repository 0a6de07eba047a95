"""A study's trials in several processes (`python -m mnist_jax.sweep --jobs=N`).

Each trial is a run directory whose lock (rundir.RunDir.lock) is held by the one process that
trains it, so N worker processes share the queue without a coordinator: each walks the trials
from its own starting point (`rotated`), skips one that another worker holds
(WorkdirBusyError), and at a search's rung boundary waits for the trials still held. The
process that started them shows their progress and, once all have exited, aggregates the
trial directories as a single process would. Every trial is a pure function of its config, so
the results are the same bits as with one process; only the wall-clock time changes.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

from mnist_jax.launcher import supervisor
from mnist_jax.launcher.commands import Command, Site

T = TypeVar("T")


def rotated(items: Sequence[T], worker: int, jobs: int) -> list[T]:
    """`items` starting at worker's share (worker k of n starts k/n of the way in), wrapping
    around: the workers start on different trials and end on each other's leftovers."""
    start = len(items) * worker // jobs
    return [*items[start:], *items[:start]]


def commands(spec: str, output_dir: str, jobs: int, args: Sequence[str] = ()) -> list[Command]:
    """The worker processes: this sweep again (with the command line's `args`) and --worker=k,
    each logging to <output_dir>/logs/worker_<k>.log."""
    site = Site.here()
    argv = (site.python, "-m", "mnist_jax.sweep", f"--study={spec}", f"--output_dir={output_dir}")
    return [
        Command(
            (*argv, *args, f"--jobs={jobs}", f"--worker={k}"),
            site.python_path(),
            log=Path(output_dir) / "logs" / f"worker_{k}.log",
            label=f"worker {k}",
        )
        for k in range(jobs)
    ]


def run(spec: str, output_dir: str, jobs: int, args: Sequence[str] = ()) -> int:
    """Runs `jobs` workers to completion; the exit status of the first to fail, else 0."""
    return supervisor.run_pool(commands(spec, output_dir, jobs, args), jobs)
