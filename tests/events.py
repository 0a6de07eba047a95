"""TensorBoard event files read back the way TensorBoard itself reads them (EventAccumulator)."""

from pathlib import Path

from tensorboard.backend.event_processing import event_accumulator


def load(logdir: str | Path) -> event_accumulator.EventAccumulator:
    """Every event of `logdir`, nothing sampled away, after TensorBoard's purge of stale steps."""
    guidance = {event_accumulator.SCALARS: 0, event_accumulator.IMAGES: 0}
    accumulator = event_accumulator.EventAccumulator(str(logdir), size_guidance=guidance)
    return accumulator.Reload()


def scalars(logdir: str | Path) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value), ...] in the order TensorBoard shows them."""
    accumulator = load(logdir)
    return {
        tag: [(e.step, e.value) for e in accumulator.Scalars(tag)]
        for tag in accumulator.Tags()[event_accumulator.SCALARS]
    }


def points_per_epoch(points: list[tuple[int, float]], steps_per_epoch: int) -> dict[int, int]:
    """How many of `points` (train/* windows, logged at their last step) fall in each epoch."""
    counts: dict[int, int] = {}
    for step, _ in points:
        epoch = (step - 1) // steps_per_epoch + 1
        counts[epoch] = counts.get(epoch, 0) + 1
    return counts
