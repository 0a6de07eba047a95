"""The training loop: `train_and_evaluate(config, workdir)`, readable top to bottom.

The dataset is put on every device once. An epoch is a few compiled `lax.scan` chunks (each many
optimizer steps); Python only logs, evaluates and checkpoints between them. A run is a pure
function of its config: the batch order comes from (seed, epoch) alone, and resuming from a
checkpoint continues exactly where the uninterrupted run would be.
"""

import dataclasses
import math
import time
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging

from mnist_jax import checkpoint, input_pipeline, models, optim, parallel, rundir, steps
from mnist_jax.errors import ConfigError
from mnist_jax.evaluator import SplitEvaluator
from mnist_jax.parallel import Parallel


@dataclasses.dataclass
class BestTracker:
    """The best epoch by validation loss so far, and how long ago it was (early stopping)."""

    epoch: int = 0
    val_loss: float | None = None
    val_accuracy: float | None = None
    epochs_since_best: int = 0

    def update(self, epoch: int, val_loss: float, val_accuracy: float, min_delta: float) -> bool:
        if self.val_loss is None or val_loss < self.val_loss - min_delta:
            self.epoch, self.val_loss, self.val_accuracy = epoch, val_loss, val_accuracy
            self.epochs_since_best = 0
            return True
        self.epochs_since_best += 1
        return False


class Progress:
    """Logs steps/s, images/s and an ETA at most every `every_seconds`."""

    def __init__(self, total_steps: int, done_steps: int, batch: int, every_seconds: float):
        self.total, self.done, self.batch = total_steps, done_steps, batch
        self.every, self.start_done, self.start = every_seconds, done_steps, time.perf_counter()
        self.last_log = self.start

    def update(self, steps_done: int, epoch: int, num_epochs: int) -> None:
        self.done += steps_done
        now = time.perf_counter()
        if now - self.last_log < self.every:
            return
        self.last_log = now
        rate = (self.done - self.start_done) / max(now - self.start, 1e-9)
        eta = (self.total - self.done) / max(rate, 1e-9)
        logging.info(
            "epoch %d/%d  step %d/%d  %.1f steps/s  %.0f img/s  ETA %s",
            epoch, num_epochs, self.done, self.total, rate, rate * self.batch, _hms(eta),
        )  # fmt: skip


def _hms(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m // 60}h{m % 60:02d}m{s:02d}s" if m >= 60 else f"{m}m{s:02d}s"


def _chunks(steps_per_epoch: int, steps_per_chunk: int) -> list[tuple[int, int]]:
    """(first step, number of steps) of each compiled scan in an epoch; at most two lengths."""
    size = steps_per_chunk or math.ceil(steps_per_epoch / 10)
    return [(s, min(size, steps_per_epoch - s)) for s in range(0, steps_per_epoch, size)]


def _validate(config: ml_collections.ConfigDict, par: Parallel, num_train: int) -> int:
    """Fail before any work on settings that cannot run; returns steps per epoch."""
    par.check_divisible("batch_size", config.batch_size)
    if config.batch_size > num_train:
        raise ConfigError(
            f"batch_size={config.batch_size} is larger than the {num_train} training examples"
        )
    if config.num_epochs < 1:
        raise ConfigError(f"num_epochs must be >= 1, got {config.num_epochs}")
    if config.eval_batch_size < 1:
        raise ConfigError(f"eval_batch_size must be >= 1, got {config.eval_batch_size}")
    local_batch = config.batch_size // par.num_devices
    if config.microbatches < 1 or local_batch % config.microbatches:
        raise ConfigError(
            f"microbatches={config.microbatches} must be >= 1 and divide the per-device batch "
            f"{local_batch} (batch_size={config.batch_size} over {par.num_devices} devices)"
        )
    if config.steps_per_chunk < 0:
        raise ConfigError(f"steps_per_chunk must be >= 0 (0 = auto), got {config.steps_per_chunk}")
    return num_train // config.batch_size


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Trains `config` in `workdir` (resuming if it holds a checkpoint); returns the summary."""
    run = rundir.RunDir(workdir)
    run.prepare(config)
    summary = run.read_summary()
    parallel.check_same_on_all_processes(summary is not None, "finished states (summary.json)")
    if summary is not None:
        logging.info("%s already holds a finished run (summary.json); not training again", workdir)
        return summary

    # Everything that can be wrong with the config fails here, before data or compilation.
    par = Parallel(config.parallel.mode)
    model = models.create_model(config)
    data = input_pipeline.load_dataset(config.data)
    model = models.project_inputs(model, data.projection)  # identity unless data.pca_components
    steps_per_epoch = _validate(config, par, len(data.train))
    schedule = optim.create_schedule(config, steps_per_epoch)
    tx = optim.create_optimizer(config, schedule)
    ckpt = checkpoint.Checkpointer(
        run.checkpoint_dir, keep=config.checkpoint.keep, keep_best_by=config.checkpoint.keep_best_by
    )

    # State: fresh from the seed, or restored from the latest checkpoint.
    root = jax.random.key(config.seed)
    init_key, shuffle_key, dropout_key = (jax.random.fold_in(root, i) for i in range(3))
    params = jax.device_get(models.init_params(model, init_key))
    state = jax.device_get(steps.TrainState.create(params, tx))
    best_params, best, epoch, train_seconds = params, BestTracker(), 0, 0.0
    latest = ckpt.latest_epoch()
    parallel.check_same_on_all_processes(-1 if latest is None else latest, "latest checkpoints")
    if latest is not None:
        state, best_params, meta = ckpt.restore(latest, state, params)
        best, epoch, train_seconds = BestTracker(**meta["best"]), latest, meta["train_seconds"]
        run.keep_metrics_through(epoch)
        logging.info("Resuming %s from the checkpoint of epoch %d", workdir, epoch)
    logging.info(
        "%s: %s parameters, %d train / %d val / %d test examples, %d devices (%s, %s)",
        config.model, f"{models.count_params(params):,}", len(data.train),
        len(data.validation or ()), len(data.test), par.num_devices, par.device_kind, par.mode,
    )  # fmt: skip

    # Data and state on the devices; every program compiled before the clock starts.
    train_data = par.replicate((data.train.images, data.train.labels))
    val_eval = data.validation and SplitEvaluator(
        par, model, data.validation, config.eval_batch_size
    )
    test_eval = SplitEvaluator(par, model, data.test, config.eval_batch_size)
    state_dev = par.replicate(state)
    layout = steps.Layout(config.batch_size, par.num_devices)
    chunks = _chunks(steps_per_epoch, config.steps_per_chunk)
    programs, compile_seconds = {}, 0.0
    for _, n in chunks:
        if n not in programs:
            fn = steps.make_train_chunk(
                model, tx, layout, len(data.train), n, config.label_smoothing,
                config.data.augment_shift, config.microbatches,
            )  # fmt: skip
            args = (state_dev, *train_data, shuffle_key, dropout_key, np.int32(0))
            programs[n], seconds = par.compile(fn, args, replicated_args=3, donate_state=True)
            compile_seconds += seconds
    for evaluator in (val_eval, test_eval):
        compile_seconds += evaluator.compile(state_dev.params) if evaluator else 0.0
    logging.info(
        "Compiled %d programs in %.1f s", len(programs) + 1 + bool(val_eval), compile_seconds
    )

    # The loop: train an epoch, validate, record, checkpoint, maybe stop.
    patience, min_delta = config.early_stopping.patience, config.early_stopping.min_delta
    stopped_early = bool(patience) and best.epochs_since_best >= patience
    progress = Progress(
        config.num_epochs * steps_per_epoch, epoch * steps_per_epoch, config.batch_size,
        config.log_every_seconds,
    )  # fmt: skip
    while epoch < config.num_epochs and not stopped_early:
        epoch += 1
        epoch_key = jax.random.fold_in(shuffle_key, epoch)
        start = time.perf_counter()
        sums = []
        for first, n in chunks:
            state_dev, chunk_sums = programs[n](
                state_dev, *train_data, epoch_key, dropout_key, np.int32(first)
            )
            sums.append(par.to_host(chunk_sums))  # waits for the chunk: honest progress
            progress.update(n, epoch, config.num_epochs)
        epoch_seconds = time.perf_counter() - start
        train_seconds += epoch_seconds
        count = sum(int(s["count"]) for s in sums)
        record = {
            "epoch": epoch,
            "step": epoch * steps_per_epoch,
            "train_loss": sum(float(s["loss"]) for s in sums) / count,
            "train_accuracy": sum(int(s["correct"]) for s in sums) / count,
            "learning_rate": float(schedule(epoch * steps_per_epoch - 1)),
            "epoch_seconds": epoch_seconds,
            "train_samples_per_second": count / epoch_seconds,
        }
        if val_eval:
            val, _ = val_eval(state_dev.params)
            record |= {"val_loss": val["loss"], "val_accuracy": val["accuracy"]}
            improved = best.update(epoch, val["loss"], val["accuracy"], min_delta)
            stopped_early = bool(patience) and best.epochs_since_best >= patience
        else:  # nothing to select on: the last epoch is the best
            improved, best.epoch = True, epoch
        if improved:
            best_params = par.to_host(state_dev.params)
        record["elapsed_seconds"] = train_seconds
        run.append_metrics(record)
        logging.info(
            "epoch %d/%d  train loss %.4f acc %.4f  val loss %s acc %s  %.1f s (%.0f img/s)%s",
            epoch, config.num_epochs, record["train_loss"], record["train_accuracy"],
            _fmt(record.get("val_loss")), _fmt(record.get("val_accuracy")), epoch_seconds,
            record["train_samples_per_second"], "  *best*" if improved and val_eval else "",
        )  # fmt: skip

        last = epoch == config.num_epochs or stopped_early
        if last or epoch % config.checkpoint.every_epochs == 0:
            meta = {
                "epoch": epoch,
                "best": dataclasses.asdict(best),
                "train_seconds": train_seconds,
            }
            scores = {k: record[k] for k in ("val_loss", "val_accuracy")} if val_eval else None
            ckpt.save(epoch, par.to_host(state_dev), best_params, meta, scores)
    ckpt.close()
    if stopped_early:
        logging.info(
            "Stopped early after epoch %d: no val-loss gain for %d epochs", epoch, patience
        )

    # Test the best parameters (by validation loss) on all 10,000 test images.
    test, _ = test_eval(par.replicate(best_params))
    metrics_log = run.read_metrics()
    summary = {
        "model": config.model,
        "num_params": models.count_params(params),
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "test_count": test["count"],
        "best_epoch": best.epoch,
        "best_val_loss": best.val_loss,
        "best_val_accuracy": best.val_accuracy,
        "epochs_run": epoch,
        "stopped_early": stopped_early,
        "train_seconds": train_seconds,
        "compile_seconds": compile_seconds,
        "final_train_loss": metrics_log[-1]["train_loss"] if metrics_log else None,
        "parallel_mode": par.mode,
        "seed": config.seed,
        "global_batch_size": config.batch_size,
        **rundir.provenance(),
    }
    run.write_summary(summary)
    logging.info(
        "Test accuracy %.4f (loss %.4f) on %d images, best epoch %d; trained %.1f s",
        test["accuracy"], test["loss"], test["count"], best.epoch, train_seconds,
    )  # fmt: skip
    return summary


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"
