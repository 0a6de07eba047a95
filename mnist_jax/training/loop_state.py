"""What the training loop carries from epoch to epoch and saves as JSON in every checkpoint,
so that a resumed run continues exactly: the epoch and chunk reached, the running sums of a
preempted epoch, the best epoch by validation loss, and the metrics history."""

import dataclasses
import math
from typing import Any


@dataclasses.dataclass
class BestTracker:
    """The best epoch by validation loss so far, and how long ago it was (early stopping)."""

    epoch: int = 0
    val_loss: float | None = None
    val_accuracy: float | None = None
    epochs_since_best: int = 0

    def update(self, epoch: int, val_loss: float, val_accuracy: float, min_delta: float) -> bool:
        if math.isfinite(val_loss) and (
            self.val_loss is None or val_loss < self.val_loss - min_delta
        ):
            self.epoch, self.val_loss, self.val_accuracy = epoch, val_loss, val_accuracy
            self.epochs_since_best = 0
            return True
        self.epochs_since_best += 1
        return False


@dataclasses.dataclass
class LoopState:
    """The loop's own state, saved as JSON in every checkpoint."""

    epoch: int = 0  # completed epochs
    chunk: int = 0  # chunks of epoch + 1 already run (non-zero only after a preemption)
    partial: dict[str, float] = dataclasses.field(default_factory=dict)  # their sums
    best: BestTracker = dataclasses.field(default_factory=BestTracker)
    train_seconds: float = 0.0
    stopped_early: bool = False
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # metrics.jsonl

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> "LoopState":
        loop = meta["loop"]
        return cls(**(loop | {"best": BestTracker(**loop["best"])}))
