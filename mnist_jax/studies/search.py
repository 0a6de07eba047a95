"""Hyperparameter search: random configurations trained rung by rung with successive halving.

A study file may return a `Search` instead of a grid `Study`:

    Search(
        base="configs/mlp.py",
        space={"optimizer.learning_rate": LogUniform(1e-4, 1e-2),
               "mlp.dropout": Uniform(0.0, 0.5),
               "mlp.hidden_sizes": Choice([(256,), (512, 512)])},
        trials=27, rungs=(1, 3, 9), eta=3,   # 27 trials for 1 epoch, the best 9 to 3, 3 to 9
        final_seeds=(1, 2, 3, 4, 5),
    )

- Sampling: trial i's values come from a generator seeded with (seed, i): reproducible, and
  raising `trials` keeps the trials already sampled. Every sampled config is validated before
  anything trains, like a grid.
- Successive halving (Jamieson & Talwalkar 2016; Li et al. 2018): every trial is a run of the
  full budget (num_epochs = the last rung, its learning-rate schedule over that budget), paused
  after rungs[0] epochs; the best n // eta by validation continue to rungs[1], and so on.
  A trial's score at a rung is the validation accuracy (or loss) of the epoch that the run keeps
  up to that rung (its lowest validation loss), read from its metrics.jsonl: a rung's
  promotions are a function of those records alone, the same on every rerun however far the
  trials have gone since. Ties go to the lower trial number; a diverged trial ranks last.
- Selection uses validation data only. The best trial of the last rung is then retrained on
  `final_seeds` (fresh: not the search trials' seed) and reported as the mean ± std of their
  test accuracy; the search trials' own test numbers are never read.
- Resumable like a grid: trials are ordinary run directories (<output_dir>/trials/trial=007/,
  the retraining in <output_dir>/final/seed=1/); rerunning the command continues paused and
  interrupted runs from their checkpoints and trains nothing twice.

Why not optuna: its SuccessiveHalvingPruner is asynchronous (a trial is pruned against whichever
trials reported before it, so decisions depend on completion order), its trials are callbacks
and its resume state lives in its own storage. Synchronous rungs over our run directories reuse
the trainer's exact resume and need no dependency; random sampling is a few lines of numpy.
"""

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np
from absl import logging

from mnist_jax.core import configuration
from mnist_jax.core.errors import ConfigError, WorkdirBusyError
from mnist_jax.studies import study as study_lib
from mnist_jax.studies import workers
from mnist_jax.training import guards, rundir, train

METRICS = {"val_accuracy": True, "val_loss": False}  # rung metric -> higher is better
FAILED_FILE = "search_failed.json"  # in a trial's directory: it diverged; not trained again


# --- The search space -----------------------------------------------------------------------


def _check_bounds(key: str, low: Any, high: Any, positive: bool = False, ints: bool = False):
    kind = int if ints else int | float
    ok = all(isinstance(v, kind) and not isinstance(v, bool) for v in (low, high))
    ok = ok and math.isfinite(low) and math.isfinite(high) and low < high
    if not ok or (positive and low <= 0):
        need = "integers" if ints else "positive numbers" if positive else "finite numbers"
        raise ConfigError(f"search space {key!r}: bounds ({low!r}, {high!r}) must be {need}, "
                          "low < high")  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Uniform:
    """A float uniform in [low, high)."""

    low: float
    high: float

    def check(self, key: str) -> None:
        _check_bounds(key, self.low, self.high)

    def sample(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(self.low, self.high))


@dataclasses.dataclass(frozen=True)
class LogUniform:
    """A float whose logarithm is uniform: each decade between low and high equally likely."""

    low: float
    high: float

    def check(self, key: str) -> None:
        _check_bounds(key, self.low, self.high, positive=True)

    def sample(self, rng: np.random.Generator) -> float:
        return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))


@dataclasses.dataclass(frozen=True)
class IntUniform:
    """An integer uniform in [low, high], both included."""

    low: int
    high: int

    def check(self, key: str) -> None:
        _check_bounds(key, self.low, self.high, ints=True)

    def sample(self, rng: np.random.Generator) -> int:
        return int(rng.integers(self.low, self.high + 1))


@dataclasses.dataclass(frozen=True)
class Choice:
    """One of `values`, each equally likely (tuples for list-valued keys: (256,), (512, 512))."""

    values: Sequence[Any]

    def check(self, key: str) -> None:
        if isinstance(self.values, str) or not isinstance(self.values, Sequence) or not self.values:
            raise ConfigError(f"search space {key!r}: Choice needs a non-empty list of values, "
                              f"got {self.values!r}")  # fmt: skip

    def sample(self, rng: np.random.Generator) -> Any:
        return self.values[int(rng.integers(len(self.values)))]


DISTRIBUTIONS = (Uniform, LogUniform, IntUniform, Choice)


@dataclasses.dataclass(frozen=True)
class Search:
    base: str  # config file of every trial
    space: Mapping[str, Any]  # config key (or an input of `derived`) -> a distribution
    trials: int  # configurations sampled
    rungs: Sequence[int]  # epochs at which trials are compared; the last is the full budget
    eta: int = 3  # each rung keeps the best 1/eta of its trials (at least one)
    seed: int = 0  # sampling seed
    trial_seed: int = 0  # training seed of every search trial
    final_seeds: Sequence[int] = (1, 2, 3, 4, 5)  # fresh seeds the best config is retrained on
    overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    derived: Sequence[study_lib.Derived] = ()
    metric: str = "val_accuracy"  # rung score: 'val_accuracy' or 'val_loss'
    name: str = ""  # filled from the file name when empty
    description: str = ""  # filled from the module docstring when empty


@dataclasses.dataclass(frozen=True)
class SearchTrial:
    index: int
    name: str  # its run directory under <output_dir>/trials/
    point: dict[str, Any]  # space key -> sampled value
    config: ml_collections.ConfigDict


def _is_int(value: Any, lo: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= lo


def check(search: Search) -> None:
    """The search's own fields (its space, budget and seeds), each failure in one line."""
    if not isinstance(search.space, Mapping) or not search.space:
        raise ConfigError("search has an empty space; give e.g. "
                          "{'optimizer.learning_rate': LogUniform(1e-4, 1e-2)}")  # fmt: skip
    for key, dist in search.space.items():
        if not isinstance(dist, DISTRIBUTIONS):
            names = ", ".join(d.__name__ for d in DISTRIBUTIONS)
            raise ConfigError(f"search space {key!r}: {dist!r} is not a distribution ({names})")
        dist.check(key)
    for key in ("seed", "num_epochs"):
        if key in search.space or key in search.overrides:
            raise ConfigError(f"{key!r} is set by the search (trial_seed, final_seeds, rungs), "
                              "not by its space or overrides")  # fmt: skip
    if not _is_int(search.trials, 1):
        raise ConfigError(f"search trials={search.trials!r} must be a positive integer")
    rungs = list(search.rungs)
    if not rungs or not all(_is_int(r, 1) for r in rungs) or rungs != sorted(set(rungs)):
        raise ConfigError(f"search rungs={rungs!r} must be increasing positive epoch counts, "
                          "e.g. (1, 3, 9)")  # fmt: skip
    if not _is_int(search.eta, 2):
        raise ConfigError(f"search eta={search.eta!r} must be an integer >= 2")
    if not _is_int(search.seed) or not _is_int(search.trial_seed):
        raise ConfigError(f"search seed={search.seed!r} and trial_seed={search.trial_seed!r} "
                          "must be non-negative integers")  # fmt: skip
    finals = list(search.final_seeds)
    if not finals or not all(_is_int(s) for s in finals) or len(set(finals)) != len(finals):
        raise ConfigError(f"final_seeds={finals!r} must be distinct non-negative integers")
    if search.trial_seed in finals:
        raise ConfigError(f"final_seeds={finals!r} must be fresh: not the search trials' "
                          f"trial_seed={search.trial_seed}")  # fmt: skip
    if search.metric not in METRICS:
        raise ConfigError(f"search metric={search.metric!r}; valid: {', '.join(METRICS)}")
    inputs = {i for d in search.derived for i in d.inputs}
    if missing := sorted(inputs - set(search.space)):
        raise ConfigError(f"derived value reads {missing[0]!r}, which is not in the space")


def sample(search: Search) -> list[dict[str, Any]]:
    """The sampled values of every trial: trial i from a generator seeded with (seed, i)."""
    points = []
    for i in range(search.trials):
        rng = np.random.default_rng([search.seed, i])
        points.append({key: dist.sample(rng) for key, dist in search.space.items()})
    return points


def trial_name(index: int) -> str:
    return f"trial={index:03d}"


def expand(search: Search) -> list[SearchTrial]:
    """Checks the search and returns its trials, every config validated; runs nothing."""
    check(search)
    base_config = configuration.load(search.base)
    where = f"search {search.name!r} ({search.base})"
    study_lib.check_keys(base_config, [*search.overrides, *search.space], search.derived, where)
    overrides = {**search.overrides, "num_epochs": search.rungs[-1]}
    trials = []
    for i, point in enumerate(sample(search)):
        config = study_lib.configure(base_config, overrides, point, search.derived, where)
        if i == 0 and not config.data.validation_fraction > 0:
            raise ConfigError(f"{where}: a search selects on validation data; "
                              "data.validation_fraction must be > 0")  # fmt: skip
        config.seed = search.trial_seed
        trials.append(SearchTrial(i, trial_name(i), point, config))
    return trials


def final_config(trial: SearchTrial, seed: int) -> ml_collections.ConfigDict:
    """The trial's config with another training seed: the winner retrained."""
    config = trial.config.copy_and_resolve_references()
    config.seed = seed
    return config


# --- Successive halving -----------------------------------------------------------------------


def rung_sizes(trials: int, eta: int, num_rungs: int) -> list[int]:
    """Trials at each rung: n, n // eta, n // eta**2, ..., never fewer than one."""
    sizes = [trials]
    for _ in range(num_rungs - 1):
        sizes.append(max(1, sizes[-1] // eta))
    return sizes


def rung_score(
    records: Sequence[Mapping[str, Any]], epoch: int, metric: str, min_delta: float = 0.0
) -> float | None:
    """The validation `metric` of the epoch a run keeps among its first `epoch` epochs: the one
    with the lowest validation loss (an improvement must exceed `min_delta`, as in training)."""
    best = None
    for record in records:
        loss = record.get("val_loss")
        if record["epoch"] > epoch or loss is None or not math.isfinite(loss):
            continue
        if best is None or loss < best["val_loss"] - min_delta:
            best = record
    return None if best is None else best.get(metric)


def promote(scores: Mapping[int, float | None], keep: int, metric: str) -> list[int]:
    """The `keep` best trials (in trial order): best score first, ties to the lower trial number,
    trials without a score (diverged) last."""
    higher = METRICS[metric]

    def rank(i: int) -> tuple:
        s = scores[i]
        return (s is None, 0.0 if s is None else (-s if higher else s), i)

    return sorted(sorted(scores, key=rank)[:keep])


@dataclasses.dataclass
class TrialState:
    """What a trial's directory says: epochs recorded, finished, diverged."""

    records: list[dict[str, Any]]
    finished: bool
    failed: str | None

    @classmethod
    def read(cls, workdir: Path) -> "TrialState":
        run = rundir.RunDir(workdir)
        failed = workdir / FAILED_FILE
        return cls(
            records=run.read_metrics(),
            finished=run.summary_path.exists(),
            failed=json.loads(failed.read_text())["error"] if failed.exists() else None,
        )

    @property
    def epochs(self) -> int:
        return max((r["epoch"] for r in self.records), default=0)

    def reached(self, epoch: int) -> bool:
        """Trained `epoch` epochs, stopped early before them, or diverged: nothing left to do."""
        return self.finished or self.failed is not None or self.epochs >= epoch

    def status(self) -> str:
        if self.failed is not None:
            return "diverged"
        return (
            "finished" if self.finished else f"{self.epochs} epochs" if self.records else "pending"
        )


def train_trial(trial: SearchTrial, workdir: Path, epochs: int) -> None:
    """Trains (or continues) a trial up to `epochs`; a divergence is recorded, not raised."""
    try:
        train.train_and_evaluate(trial.config, str(workdir), pause_after=epochs)
    except guards.Diverged as e:
        logging.warning("%s diverged: %s", trial.name, e)
        rundir.write_atomic(workdir / FAILED_FILE, rundir.to_json({"error": str(e)}) + "\n")


def _train_unless_held(trial: SearchTrial, workdir: Path, epochs: int, worker: bool) -> bool:
    """train_trial; False if another process holds the trial (raised unless a `worker`)."""
    try:
        train_trial(trial, workdir, epochs)
    except WorkdirBusyError:
        if not worker:
            raise
        return False
    return True


def halve(
    search: Search, trials: Sequence[SearchTrial], trials_dir: Path, *, train_missing: bool,
    shard: tuple[int, int] | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """Runs the rungs in order (training what is missing when `train_missing`); returns one
    record per rung reached: its epochs, trials, scores and the trials it promoted. Stops at a
    rung whose trials are not all trained (only when not `train_missing`).

    `shard` = (k, n): this is worker k of n (studies/workers.py). It starts each rung at its
    share of the trials, skips those another worker holds, and before scoring the rung waits
    until no worker holds any of them.
    """
    sizes = rung_sizes(search.trials, search.eta, len(search.rungs))
    alive = [t.index for t in trials]
    rungs = []
    for k, epochs in enumerate(search.rungs):
        states, held = {}, []
        order = alive if shard is None else workers.rotated(alive, *shard)
        for n, i in enumerate(order, 1):
            trial, workdir = trials[i], trials_dir / trials[i].name
            states[i] = TrialState.read(workdir)
            if train_missing and not states[i].reached(epochs):
                logging.info("Rung %d of %d (%d epochs): trial %d of %d: %s", k + 1,
                             len(search.rungs), epochs, n, len(alive), trial.name)  # fmt: skip
                if not _train_unless_held(trial, workdir, epochs, shard is not None):
                    held.append(i)
                states[i] = TrialState.read(workdir)
        while held:  # trials other workers hold: wait, then train whatever they left
            i = held.pop(0)
            trial, workdir = trials[i], trials_dir / trials[i].name
            logging.info("Waiting for %s (another worker holds it)", trial.name)
            rundir.RunDir(workdir).wait_for_holder()
            reached = TrialState.read(workdir).reached(epochs)
            if not reached and not _train_unless_held(trial, workdir, epochs, True):
                held.append(i)
            states[i] = TrialState.read(workdir)
        rung = {"rung": k + 1, "epochs": epochs, "trials": list(alive), "promoted": None}
        min_delta = trials[0].config.early_stopping.min_delta
        rung["scores"] = {  # a run that diverged before this rung has no score here
            i: None
            if states[i].failed is not None and states[i].epochs < epochs
            else rung_score(states[i].records, epochs, search.metric, min_delta)
            for i in alive
        }
        rung["complete"] = all(states[i].reached(epochs) for i in alive)
        rungs.append(rung)
        if not rung["complete"]:
            break
        if k + 1 < len(search.rungs):
            alive = rung["promoted"] = promote(rung["scores"], sizes[k + 1], search.metric)
    return rungs


def best_trial(search: Search, rungs: Sequence[Mapping[str, Any]]) -> int | None:
    """The winner of the last rung, once every rung is complete (None before, or if all failed)."""
    if len(rungs) < len(search.rungs) or not rungs[-1]["complete"]:
        return None
    scores = rungs[-1]["scores"]
    best = promote(scores, 1, search.metric)[0]
    return None if scores[best] is None else best
