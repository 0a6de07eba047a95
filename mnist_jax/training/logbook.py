"""TensorBoard event files of a run, written with tensorboardX (no TensorFlow needed).

  <workdir>/tensorboard/events.out.tfevents.*      `tensorboard --logdir runs/` shows them

Tags, all against the global optimizer step:
  train/loss, train/accuracy, train/learning_rate
        every `config.log_every_steps` steps, from the per-step sums the compiled scan returns
        (so below epoch level without leaving the scan); windows restart at each epoch, so the
        last one of an epoch may be shorter. Weighted by their lengths in steps, the points of
        an epoch average to that epoch's train_loss in metrics.jsonl.
  epoch/train_loss, epoch/train_accuracy, val/loss, val/accuracy, test/loss, test/accuracy,
  perf/images_per_second, perf/epoch_seconds
        once per epoch, the values of metrics.jsonl (test/*: the current weights, every
        `config.test_every_epochs` epochs; monitoring only, the run selects on validation loss)
  best/test_loss, best/test_accuracy
        once, at the end: the best epoch's test metrics (summary.json)
  hparams: the flattened config, with the metrics above, for TensorBoard's HPARAMS tab.

Only process 0 writes. A resumed run opens its writer with `purge_step` = the checkpoint's step
+ 1, so TensorBoard drops whatever a killed run had logged after the checkpoint it resumes from
and no step appears twice.
"""

import contextlib
import glob
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np

from mnist_jax.core.errors import UserError
from mnist_jax.training import rundir

SUBDIR = "tensorboard"
# Listed on the HPARAMS tab next to each run's config.
HPARAM_METRICS = ("val/loss", "val/accuracy", "best/test_loss", "best/test_accuracy")
EPOCH_TAGS = {  # metrics.jsonl key -> tag
    "train_loss": "epoch/train_loss",
    "train_accuracy": "epoch/train_accuracy",
    "val_loss": "val/loss",
    "val_accuracy": "val/accuracy",
    "test_loss": "test/loss",
    "test_accuracy": "test/accuracy",
    "train_samples_per_second": "perf/images_per_second",
    "epoch_seconds": "perf/epoch_seconds",
}


def hparams(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """The config flattened to 'a.b' keys; tuples and lists as text (TensorBoard's types)."""
    flat = rundir.flatten(rundir.config_to_dict(config))
    return {k: v if isinstance(v, bool | int | float | str) else str(v) for k, v in flat.items()}


class Logbook:
    """The TensorBoard writer of one training run; a context manager that closes it."""

    def __init__(self, workdir: str | os.PathLike, config: ml_collections.ConfigDict):
        self.logdir = Path(workdir) / SUBDIR
        self.config = config
        self.every = int(config.log_every_steps)
        self.enabled = jax.process_index() == 0 and self.every > 0
        self._writer = None
        self._schedule = None
        self.steps_per_epoch = 0
        self._window = _Window()

    def __enter__(self) -> "Logbook":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, step: int, steps_per_epoch: int, schedule: Any, batch_size: int) -> None:
        """Opens the writer at global step `step` (0, or the checkpoint resumed from)."""
        if not self.enabled:
            return
        from tensorboardX.summary import hparams as hparams_summary

        # Compiled: an optax schedule called eagerly costs milliseconds of op dispatch, and a
        # point every 4 steps made that about 0.5 s of every epoch of the CNN.
        self.steps_per_epoch, self._schedule, self.batch = (
            steps_per_epoch,
            jax.jit(schedule),
            batch_size,
        )
        self._writer = EventFile(self.logdir, purge_step=step + 1)
        if step == 0:
            experiment, start_info, _ = hparams_summary(
                hparams(self.config), dict.fromkeys(HPARAM_METRICS, 0.0)
            )
            self._writer.add_summary(experiment, 0)
            self._writer.add_summary(start_info, 0)

    def train_steps(self, epoch: int, first: int, loss_sums: np.ndarray, correct: np.ndarray):
        """Steps first.. of `epoch` (0-based within it): per-step sums over the global batch."""
        if self._writer is None:
            return
        base = (epoch - 1) * self.steps_per_epoch
        for i, (loss, right) in enumerate(zip(loss_sums, correct, strict=True)):
            in_epoch = first + i + 1  # steps of the epoch done after this one
            self._window.add(base + in_epoch, float(loss), float(right))
            if in_epoch % self.every == 0 or in_epoch == self.steps_per_epoch:
                self._flush_window()

    def _flush_window(self) -> None:
        w = self._window
        if not w.steps:
            return
        count = w.steps * self.batch
        self._writer.add_scalar("train/loss", w.loss / count, w.last_step)
        self._writer.add_scalar("train/accuracy", w.correct / count, w.last_step)
        lr = float(self._schedule(w.last_step - 1))
        self._writer.add_scalar("train/learning_rate", lr, w.last_step)
        self._window = _Window()

    def epoch(self, record: dict[str, Any]) -> None:
        """The epoch's record of metrics.jsonl; flushed to disk before its checkpoint."""
        if self._writer is None:
            return
        for key, tag in EPOCH_TAGS.items():
            if record.get(key) is not None:
                self._writer.add_scalar(tag, record[key], record["step"])
        self._writer.flush()

    def finish(self, summary: dict[str, Any], step: int) -> None:
        """The best epoch's test metrics, and the run marked finished on the HPARAMS tab."""
        if self._writer is None:
            return
        from tensorboardX.summary import hparams as hparams_summary

        self._writer.add_scalar("best/test_loss", summary["test_loss"], step)
        self._writer.add_scalar("best/test_accuracy", summary["test_accuracy"], step)
        _, _, end_info = hparams_summary({}, {})
        self._writer.add_summary(end_info, step)

    def close(self) -> None:
        """Writes the steps of a window cut short (a preemption, an error), then closes."""
        if self._writer is None:
            return
        self._flush_window()
        self._writer.close()
        self._writer = None


class EventFile:
    """One TensorBoard event file, appended to synchronously.

    tensorboardX's SummaryWriter hands events to a writer thread through a bounded queue; when
    a write fails (a full or read-only disk) the thread dies, and the next `put` on the full
    queue blocks training forever. Here a failed write raises in the training loop, as one line
    naming the directory, and the run stops with its last checkpoint intact. `purge_step`: as
    SummaryWriter's, TensorBoard drops the events of earlier files from that step on.
    """

    def __init__(self, logdir: str | os.PathLike, purge_step: int | None = None):
        from tensorboardX.event_file_writer import EventsWriter

        self.logdir = Path(logdir)
        with self._failing_as_one_line():
            self.logdir.mkdir(parents=True, exist_ok=True)
            self._writer = EventsWriter(str(self.logdir / "events"))
        if purge_step is not None:
            from tensorboardX.proto.event_pb2 import Event, SessionLog

            self._write(Event(step=purge_step, file_version="brain.Event:2"))
            self._write(Event(step=purge_step, session_log=SessionLog(status=SessionLog.START)))

    def add_summary(self, summary: Any, step: int) -> None:
        from tensorboardX.proto.event_pb2 import Event

        self._write(Event(summary=summary, step=int(step), wall_time=time.time()))

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        from tensorboardX.summary import scalar

        self.add_summary(scalar(tag, float(value)), step)

    def add_image(self, tag: str, pixels: np.ndarray, step: int) -> None:
        from tensorboardX.summary import image

        self.add_summary(image(tag, pixels, dataformats="HWC"), step)

    def flush(self) -> None:
        with self._failing_as_one_line():
            self._writer.flush()

    def close(self) -> None:
        with self._failing_as_one_line():
            self._writer.close()

    def _write(self, event: Any) -> None:
        with self._failing_as_one_line():
            self._writer.write_event(event)

    @contextlib.contextmanager
    def _failing_as_one_line(self) -> Iterator[None]:
        try:
            yield
        except OSError as e:
            raise UserError(
                f"cannot write TensorBoard events in {self.logdir}: {e.strerror or e}"
            ) from None


class _Window:
    """Sums over the steps since the last train/* point."""

    def __init__(self) -> None:
        self.steps, self.loss, self.correct, self.last_step = 0, 0.0, 0.0, 0

    def add(self, step: int, loss: float, correct: float) -> None:
        self.steps += 1
        self.loss += loss
        self.correct += correct
        self.last_step = step


def write_images(logdir: str | os.PathLike, pngs: dict[str, str | os.PathLike]) -> None:
    """PNG files as TensorBoard images (tag = name), in one fresh event file under `logdir`."""
    from PIL import Image

    logdir = Path(logdir)
    for old in glob.glob(str(logdir / "events.out.tfevents.*")):
        os.remove(old)  # a rerun replaces the figures rather than adding a second copy
    writer = EventFile(logdir)
    for name, path in pngs.items():
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
        writer.add_image(name, pixels, 0)
    writer.close()
