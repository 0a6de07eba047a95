"""Progress lines of a long loop: steps/s, images/s and an ETA, at most every few seconds."""

import time

from absl import logging


def hms(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m // 60}h{m % 60:02d}m{s:02d}s" if m >= 60 else f"{m}m{s:02d}s"


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
            epoch, num_epochs, self.done, self.total, rate, rate * self.batch, hms(eta),
        )  # fmt: skip
