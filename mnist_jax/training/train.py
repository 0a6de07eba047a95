"""The training loop: `train_and_evaluate(config, workdir)`, readable top to bottom.

The dataset is put on every device once. An epoch is a few compiled `lax.scan` chunks (each many
optimizer steps); Python only logs, evaluates and checkpoints between them. A run is a pure
function of its config: the batch order comes from (seed, epoch) alone, and resuming from a
checkpoint (taken at the end of an epoch, or at a chunk boundary when the run was preempted)
continues exactly, bit for bit, where the uninterrupted run would be.

What can stop a run, and what it leaves behind (README, "Guarantees"):
- a bad setting: a one-line error before anything is written to the workdir;
- a non-finite loss or parameter: a one-line error naming the epoch and step, the last good
  checkpoint kept, no summary;
- SIGTERM / SIGINT: a checkpoint at the next chunk boundary, then exit status 75;
- kill -9 at any moment: the files of the last checkpoint; the rerun resumes from it.
"""

import dataclasses
import math
import time
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging

from mnist_jax import models
from mnist_jax.core import logs, provenance
from mnist_jax.core.errors import CheckpointError
from mnist_jax.data import Dataset, load_dataset
from mnist_jax.training import checkpoint, faults, guards, logbook, parallel, rundir, validation
from mnist_jax.training.loop_state import LoopState
from mnist_jax.training.parallel import Parallel
from mnist_jax.training.progress import Progress
from mnist_jax.training.trainer import Trainer


def train_and_evaluate(
    config: ml_collections.ConfigDict, workdir: str, *, pause_after: int | None = None
) -> dict[str, Any] | None:
    """Trains `config` in `workdir` (resuming if it holds a checkpoint); returns the summary.

    `pause_after=k` stops once k epochs are done, with a checkpoint and no summary, and returns
    None (unless the run ends first); calling again with a later k, or none, continues exactly
    as the uninterrupted run would. The run's config, schedule included, is the full run's: a
    hyperparameter search trains its trials rung by rung this way (studies/search.py).
    """
    logs.default_to_info()  # called from Python: show progress (mnist_jax.log_to_stderr)
    validation.validate(config)
    run = rundir.RunDir(workdir)
    run.check_usable()
    run.check_config(config)
    summary = run.read_summary()
    parallel.check_same_on_all_processes(summary is not None, "finished states (summary.json)")
    if summary is not None:
        logging.info("%s already holds a finished run (summary.json); not training again", workdir)
        return summary

    # Everything that can be wrong with the config fails here, before anything is written.
    with logs.heartbeat("Loading the data and building the model"):
        par = Parallel.from_config(config.parallel)
        data = load_dataset(config.data)
        trainer = Trainer.build(config, par, data)
    fingerprint = rundir.fingerprint(rundir.config_to_dict(config))
    run.lock()
    ckpt = None
    try:
        run.write_config(config)
        ckpt = checkpoint.Checkpointer(run.checkpoint_dir, keep=config.checkpoint.keep)
        with (
            guards.StopSignals() as signals,
            logbook.Logbook(run.path, config) as book,
            logs.heartbeat(f"Training in {workdir}"),  # a line at least every 5 s
        ):
            job = Job(config, run, par, data, trainer, fingerprint, signals, ckpt, book)
            return _train(job, pause_after)
    finally:
        if ckpt is not None:  # whatever stopped the run (e.g. divergence), let the last
            ckpt.close()  # checkpoint's background write commit before the process exits
        run.release()


@dataclasses.dataclass(frozen=True)
class Job:
    """Everything one training run works with, built once by train_and_evaluate."""

    config: ml_collections.ConfigDict
    run: rundir.RunDir
    par: Parallel
    data: Dataset
    trainer: Trainer
    fingerprint: str  # of the config: written into every checkpoint and the summary
    signals: guards.StopSignals
    ckpt: checkpoint.Checkpointer
    book: logbook.Logbook

    def save(self, state_dev: Any, best: Any, loop: LoopState) -> None:
        """A checkpoint of the train state, the best variables and the loop state."""
        state = self.par.to_host(state_dev)
        meta = {"loop": dataclasses.asdict(loop)}
        self.ckpt.save(int(state.step), state, best, meta, self.fingerprint)
        faults.point("checkpoint_writing")  # test hook: Orbax writes it in the background


@dataclasses.dataclass
class Programs:
    """The compiled programs of a run: a train scan per chunk length, the evaluators."""

    chunks: list[tuple[int, int]]  # (first step, steps) of each scan of an epoch
    train: dict[int, Any]  # chunk length -> its compiled scan
    val: Any  # SplitEvaluator, or None without a validation split
    test: Any
    seconds: float


def _train(job: Job, pause_after: int | None) -> dict[str, Any] | None:
    config, trainer, par = job.config, job.trainer, job.par
    state, best, loop, start_step = _resume(job)
    until = config.num_epochs if pause_after is None else min(pause_after, config.num_epochs)
    if loop.epoch >= until and loop.epoch < config.num_epochs and not loop.stopped_early:
        return None  # already paused at or after `pause_after`
    # TensorBoard drops the events a killed run logged after the checkpoint it resumes from.
    job.book.start(start_step, trainer.steps_per_epoch, trainer.schedule, config.batch_size)
    num_params = models.count_params(state.params)
    data = job.data
    logging.info(
        "%s: %s parameters, %d train / %d val / %d test examples, %d devices (%s, %s)",
        config.model,
        f"{num_params:,}",
        len(data.train),
        len(data.validation or ()),
        len(data.test),
        par.num_devices,
        par.device_kind,
        par.mode,
    )

    # Data and state on the devices; every program compiled before the clock starts.
    train_data = par.replicate((data.train.images, data.train.labels))
    state_dev = par.replicate(state)
    programs = _compile(job, state_dev, train_data)

    # The loop: train an epoch (chunk by chunk), validate, record, checkpoint, maybe stop.
    done_steps = loop.epoch * trainer.steps_per_epoch
    done_steps += sum(n for _, n in programs.chunks[: loop.chunk])
    progress = Progress(
        config.num_epochs * trainer.steps_per_epoch,
        done_steps,
        config.batch_size,
        config.log_every_seconds,
    )
    while loop.epoch < until and not loop.stopped_early:
        epoch = loop.epoch + 1
        state_dev, stop = _train_epoch(job, programs, state_dev, train_data, best, loop, progress)
        improved = _end_of_epoch(job, programs, state_dev, loop, epoch)
        if improved:
            best = par.to_host(state_dev.variables)
        last = epoch == config.num_epochs or loop.stopped_early
        job.signals.finishing = last  # no boundary left: a signal is told the summary follows
        paused = epoch == until and not last
        if last or paused or epoch % config.checkpoint.every_epochs == 0 or stop:
            job.save(state_dev, best, loop)
            faults.point("checkpoint_done", before=job.ckpt.wait)  # test hook: committed
        if stop and not last:
            job.ckpt.close()
            raise guards.Preempted(stop, epoch + 1, 0, len(programs.chunks))
    job.ckpt.close()
    if loop.epoch < config.num_epochs and not loop.stopped_early:
        logging.info("Paused after epoch %d of %d (pause_after)", loop.epoch, config.num_epochs)
        return None
    if loop.stopped_early:
        logging.info(
            "Stopped early after epoch %d: no val-loss gain for %d epochs",
            loop.epoch,
            config.early_stopping.patience,
        )
    return _finish(job, programs, best, loop, num_params)


def _resume(job: Job) -> tuple[Any, Any, LoopState, int]:
    """The initial state, or the newest checkpoint's: (state, best variables, loop, step)."""
    state = job.trainer.init_state()
    accepted = rundir.accepted_fingerprints(rundir.config_to_dict(job.config))
    restored = _restore_latest(job.ckpt, state, state.variables, accepted)
    if restored is None:
        best, loop, step = state.variables, LoopState(), 0
    else:
        state, best, step = restored.state, restored.best, restored.step
        loop = LoopState.from_meta(restored.meta)
        _check_chunk_boundary(job, loop, step)
        chunk = f", chunk {loop.chunk}" if loop.chunk else ""
        epoch = loop.epoch + (loop.chunk > 0)
        logging.info(
            "Resuming %s from the checkpoint of step %d (epoch %d%s)",
            job.run.path,
            step,
            epoch,
            chunk,
        )
    job.run.restore_metrics(loop.history)  # exactly the epochs of the checkpoint resumed from
    return state, best, loop, step


def _check_chunk_boundary(job: Job, loop: LoopState, step: int) -> None:
    """A mid-epoch checkpoint resumes at its chunk's index, so this run's chunks must end where
    that checkpoint stopped; another `steps_per_chunk` would skip or repeat steps."""
    if not loop.chunk:
        return
    chunks, epoch_start = job.trainer.chunks(), loop.epoch * job.trainer.steps_per_epoch
    if loop.chunk < len(chunks) and epoch_start + chunks[loop.chunk][0] == step:
        return
    raise CheckpointError(
        f"{job.run.path}: the checkpoint of step {step} stopped inside epoch {loop.epoch + 1} "
        f"after its chunk {loop.chunk}, where chunks of {chunks[0][1]} steps "
        f"(steps_per_chunk={job.config.steps_per_chunk}) do not end; resume with the "
        "steps_per_chunk the run was started with"
    )


def _compile(job: Job, state_dev: Any, train_data: Any) -> Programs:
    trainer, data = job.trainer, job.data
    val = data.validation and trainer.evaluator(data.validation)
    test = trainer.evaluator(data.test)
    chunks, train, seconds = trainer.chunks(), {}, 0.0
    for _, n in chunks:
        if n not in train:
            train[n], compile_seconds = trainer.train_program(n, state_dev, train_data)
            seconds += compile_seconds
    for evaluator in (val, test):
        seconds += evaluator.compile(state_dev.variables) if evaluator else 0.0
    logging.info("Compiled %d programs in %.1f s", len(train) + 1 + bool(val), seconds)
    return Programs(chunks, train, val, test, seconds)


def _train_epoch(
    job: Job,
    programs: Programs,
    state_dev: Any,
    train_data: Any,
    best: Any,
    loop: LoopState,
    progress: Progress,
) -> tuple[Any, int]:
    """The epoch's remaining chunks; returns the state and the stop signal all processes
    agreed on at the last chunk boundary (a preemption between chunks raises Preempted)."""
    config, trainer, par = job.config, job.trainer, job.par
    epoch = loop.epoch + 1
    epoch_key = jax.random.fold_in(trainer.keys.shuffle, epoch)
    chunks, stop = programs.chunks, 0
    for c in range(loop.chunk, len(chunks)):
        first, n = chunks[c]
        start = time.perf_counter()
        state_dev, per_device = programs.train[n](
            state_dev, *train_data, epoch_key, trainer.keys.dropout, np.int32(first)
        )
        faults.point("chunk", before=job.ckpt.wait)  # test hook (faults.py): it is computing
        out = {k: par.gather_shards(v) for k, v in per_device.items()}  # waits: honest time
        seconds = time.perf_counter() - start
        step_losses = out["loss"].astype(np.float64).sum(axis=(0, 2))
        global_step = (epoch - 1) * trainer.steps_per_epoch + first
        params_finite = bool(out["params_finite"].all())
        guards.check_finite(step_losses, params_finite, epoch, global_step, config)
        job.book.train_steps(epoch, first, step_losses, out["correct"].sum(axis=(0, 2)))
        sums = {
            "loss": step_losses.sum(),
            "correct": out["correct"].sum(),
            "count": n * config.batch_size,
            "seconds": seconds,
        }
        for key, value in sums.items():
            loop.partial[key] = loop.partial.get(key, 0) + float(value)
        loop.chunk = c + 1
        progress.update(n, epoch, config.num_epochs)
        stop = job.signals.agreed()  # collective: every process stops at the same boundary
        if stop and c + 1 < len(chunks):
            job.save(state_dev, best, loop)
            job.ckpt.close()
            raise guards.Preempted(stop, epoch, loop.chunk, len(chunks))
    return state_dev, stop


def _end_of_epoch(
    job: Job, programs: Programs, state_dev: Any, loop: LoopState, epoch: int
) -> bool:
    """Validates and records the epoch (metrics.jsonl, TensorBoard, the log line); returns
    whether it is the best epoch so far."""
    config, steps_per_epoch = job.config, job.trainer.steps_per_epoch
    sums = loop.partial
    epoch_seconds, count = sums["seconds"], sums["count"]
    loop.train_seconds += epoch_seconds
    record = {
        "epoch": epoch,
        "step": epoch * steps_per_epoch,
        "train_loss": sums["loss"] / count,
        "train_accuracy": sums["correct"] / count,
        "learning_rate": float(job.trainer.schedule(epoch * steps_per_epoch - 1)),
        "epoch_seconds": epoch_seconds,
        "train_samples_per_second": count / epoch_seconds,
    }
    if programs.val:
        val, _ = programs.val(state_dev.variables)
        record |= {"val_loss": val["loss"], "val_accuracy": val["accuracy"]}
        stopping = config.early_stopping
        improved = loop.best.update(epoch, val["loss"], val["accuracy"], stopping.min_delta)
        patience = stopping.patience
        loop.stopped_early = bool(patience) and loop.best.epochs_since_best >= patience
    else:  # nothing to select on: the last epoch is the best
        improved, loop.best.epoch = True, epoch
    if config.test_every_epochs and epoch % config.test_every_epochs == 0:
        now, _ = programs.test(state_dev.variables)  # monitoring only; selection is by val loss
        record |= {"test_loss": now["loss"], "test_accuracy": now["accuracy"]}
    record["elapsed_seconds"] = loop.train_seconds
    record = {k: rundir.finite_or_none(v) if isinstance(v, float) else v for k, v in record.items()}
    loop.epoch, loop.chunk, loop.partial = epoch, 0, {}
    loop.history.append(record)
    job.run.append_metrics(record)
    job.book.epoch(record)
    faults.point("metrics")  # test hook: the epoch is logged, its checkpoint not yet written
    logging.info(
        "epoch %d/%d  train loss %.4f acc %.4f  val loss %s acc %s  %.1f s (%.0f img/s)%s",
        epoch,
        config.num_epochs,
        record["train_loss"],
        record["train_accuracy"],
        _fmt(record.get("val_loss")),
        _fmt(record.get("val_accuracy")),
        epoch_seconds,
        record["train_samples_per_second"],
        "  *best*" if improved and programs.val else "",
    )
    return improved


def _finish(
    job: Job, programs: Programs, best: Any, loop: LoopState, num_params: int
) -> dict[str, Any]:
    """Tests the best variables (by validation loss) on all 10,000 test images; the summary."""
    config = job.config
    test, _ = programs.test(job.par.replicate(best))
    if not math.isfinite(test["loss"]):
        raise guards.Diverged(f"the best epoch's test loss is {test['loss']}; no summary written")
    summary = {
        "model": config.model,
        "num_params": num_params,
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "test_count": test["count"],
        "best_epoch": loop.best.epoch,
        "best_val_loss": loop.best.val_loss,
        "best_val_accuracy": loop.best.val_accuracy,
        "epochs_run": loop.epoch,
        "stopped_early": loop.stopped_early,
        "train_seconds": loop.train_seconds,
        "compile_seconds": programs.seconds,
        "final_train_loss": loop.history[-1]["train_loss"] if loop.history else None,
        "parallel_mode": job.par.mode,
        "seed": config.seed,
        "global_batch_size": config.batch_size,
        "config_fingerprint": job.fingerprint,
        **provenance.collect(),
    }
    job.run.write_summary(summary)
    faults.point("summary")  # test hook
    job.book.finish(summary, loop.epoch * job.trainer.steps_per_epoch)
    logging.info(
        "Test accuracy %.4f (loss %.4f) on %d images, best epoch %d; trained %.1f s",
        test["accuracy"],
        test["loss"],
        test["count"],
        loop.best.epoch,
        loop.train_seconds,
    )
    return summary


def _restore_latest(ckpt, state, best, fingerprints) -> checkpoint.Restored | None:
    """The newest checkpoint that verifies; bad ones are moved aside with a warning each."""
    bad = []
    for step in ckpt.steps():
        try:
            restored = ckpt.restore(step, state, best, fingerprints)
            error = ""
        except CheckpointError as e:
            restored, error = None, str(e)
        parallel.check_same_on_all_processes(int(bool(error)), "checkpoint verification")
        if not error:
            return restored
        where = ckpt.quarantine(step, error) if jax.process_index() == 0 else "corrupt_checkpoints"
        parallel.barrier("quarantine")
        logging.warning("%s; moved it to %s and trying the previous checkpoint", error, where)
        bad.append(step)
    if bad:
        raise CheckpointError(
            f"no checkpoint of {ckpt.directory} verifies (steps {bad} moved to "
            f"{ckpt.directory.parent / 'corrupt_checkpoints'}); delete the workdir to start over"
        )
    return None


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"
