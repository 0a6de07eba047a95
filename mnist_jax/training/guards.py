"""What stops a run early, safely: stop signals (preemption) and non-finite numbers.

SLURM, TPU maintenance and Ctrl-C send SIGTERM or SIGINT. `StopSignals` turns the first one into
a flag the loop reads at every chunk boundary: it saves a checkpoint there (mid-epoch position
included) and raises `Preempted`, which the binary turns into one line and exit status
`cli.EXIT_PREEMPTED` (75). A second signal stops at once, as the default handler would. In a
multi-process run the signal may reach only some processes, or reach them between different
chunks; `StopSignals.agreed` makes the stop collective, so that all of them save the same
checkpoint (a collective write) and stop at the same boundary.
"""

import signal
import threading
from types import FrameType
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from mnist_jax.core import cli
from mnist_jax.core.errors import UserError

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Preempted(Exception):
    """A stop signal arrived; a checkpoint was saved; rerunning resumes from it."""

    exit_status = cli.EXIT_PREEMPTED

    def __init__(self, signum: int, epoch: int, chunk: int, chunks: int):
        where = (
            f"epoch {epoch}, after chunk {chunk} of {chunks}"
            if chunk
            else f"end of epoch {epoch - 1}"
        )
        super().__init__(
            f"stopped by {signal.Signals(signum).name}: checkpoint saved at {where}; rerun the "
            "same command to resume"
        )


class Diverged(UserError):
    """Training produced non-finite numbers; nothing after the last good checkpoint is kept."""


class StopSignals:
    """Context manager: SIGTERM/SIGINT set `received` (the signal number) instead of killing."""

    def __init__(self) -> None:
        self.received = 0
        self.finishing = False  # set once the last epoch is done: a signal cannot stop it then
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received:  # a second signal: give up on the graceful stop
            signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))
            signal.raise_signal(signum)
            return
        self.received = signum
        if self.finishing:  # no boundary is left: the run is done but for its summary
            logging.warning(
                "%s received: training is done and its final test is running; the run ends "
                "with its summary in moments (send it again to stop at once: the rerun then "
                "writes the summary)", signal.Signals(signum).name,
            )  # fmt: skip
            return
        logging.warning(
            "%s received: stopping at the next chunk boundary with a checkpoint (send it again "
            "to stop at once)", signal.Signals(signum).name,
        )  # fmt: skip

    def agreed(self) -> int:
        """The signal any process has received (0: none); the same on every process.

        A collective (an allgather of one integer) when there are several processes: every
        process must call it at the same points of the loop.
        """
        if jax.process_count() == 1:
            return self.received
        flags = multihost_utils.process_allgather(np.int32(self.received))
        return int(np.max(flags))

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():  # signals need the main thread
            for s in _SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)


def check_finite(
    step_losses: np.ndarray, params_finite: bool, epoch: int, first_step: int,
    config: ml_collections.ConfigDict,
) -> None:  # fmt: skip
    """Raise `Diverged` naming the first bad step when a loss or a parameter is not finite."""
    bad = np.flatnonzero(~np.isfinite(step_losses))
    if not len(bad) and params_finite:
        return
    step = first_step + (int(bad[0]) if len(bad) else len(step_losses) - 1) + 1
    what = f"loss is {step_losses[bad[0]]}" if len(bad) else "a parameter is not finite"
    lr = config.optimizer.learning_rate
    raise Diverged(
        f"training diverged at epoch {epoch}, step {step}: the {what}; the likely cause is the "
        f"learning rate (optimizer.learning_rate={lr:g} with {config.optimizer.name}); lower it "
        "or set optimizer.grad_clip_norm. The last good checkpoint is kept; no summary written"
    )
