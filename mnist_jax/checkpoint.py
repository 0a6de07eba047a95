"""Orbax checkpoints of a run: the full training state for resuming, the best parameters, and a
small JSON record of the loop's own state (epoch, early-stopping tracker).

Each checkpoint holds three items:
  state        the TrainState as host numpy arrays (restores on any number of devices);
  best_params  the parameters of the best epoch so far by validation loss (what gets evaluated);
  meta         JSON: epoch, early-stopping tracker, the epoch's metrics.
The manager keeps the latest `keep` checkpoints and the best one by `keep_best_by`.
"""

import os
from typing import Any

import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp

from mnist_jax.errors import CheckpointError

BEST_METRICS = {"val_accuracy": "max", "val_loss": "min"}


class Checkpointer:
    """Saves and restores a run's checkpoints under `<workdir>/checkpoints`."""

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        keep: int = 2,
        keep_best_by: str = "val_accuracy",
        read_only: bool = False,
    ):
        if keep_best_by not in BEST_METRICS:
            raise CheckpointError(
                f"unknown checkpoint.keep_best_by {keep_best_by!r}; "
                f"valid: {', '.join(BEST_METRICS)}"
            )
        if keep < 1:
            raise CheckpointError(f"checkpoint.keep must be >= 1, got {keep}")
        self.directory = os.path.abspath(directory)
        mode = BEST_METRICS[keep_best_by]
        metric = lambda m: m[keep_best_by]
        policy = pp.AnyPreservationPolicy(
            [
                pp.LatestN(n=keep),
                pp.BestN(
                    get_metric_fn=metric,
                    reverse=mode == "min",
                    n=1,
                    keep_checkpoints_without_metrics=False,
                ),
            ]
        )
        options = ocp.CheckpointManagerOptions(
            best_fn=metric,
            best_mode=mode,
            preservation_policy=None if read_only else policy,
            read_only=read_only,
            create=not read_only,
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_epoch(self) -> int | None:
        return self._manager.latest_step()

    def best_epoch(self) -> int | None:
        """The checkpoint kept as best (by `keep_best_by`), else the latest."""
        return self._manager.best_step()

    def all_epochs(self) -> list[int]:
        return list(self._manager.all_steps())

    def save(
        self,
        epoch: int,
        state: Any,
        best_params: Any,
        meta: dict[str, Any],
        metrics: dict[str, float] | None,
    ) -> None:
        self._manager.save(
            epoch,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                best_params=ocp.args.StandardSave(best_params),
                meta=ocp.args.JsonSave(meta),
            ),
            metrics=metrics,
        )

    def restore(self, epoch: int, state: Any, best_params: Any) -> tuple[Any, Any, dict]:
        """The checkpoint of `epoch`, shaped like the given templates."""
        restored = self._restore(
            epoch,
            state=ocp.args.StandardRestore(state),
            best_params=ocp.args.StandardRestore(best_params),
            meta=ocp.args.JsonRestore(),
        )
        return restored.state, restored.best_params, restored.meta

    def restore_best_params(self, epoch: int, template: Any) -> Any:
        """Only the best parameters of `epoch` (no optimizer state needed)."""
        return self._restore(epoch, best_params=ocp.args.StandardRestore(template)).best_params

    def _restore(self, epoch: int, **items: Any) -> Any:
        path = os.path.join(self.directory, str(epoch))
        try:
            return self._manager.restore(epoch, args=ocp.args.Composite(**items))
        except Exception as e:  # orbax raises many types; all mean "cannot use this checkpoint"
            first_line = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            raise CheckpointError(
                f"cannot restore checkpoint {path}: it is corrupt or was written for a different "
                f"model/config ({type(e).__name__}: {first_line}); delete it to fall back to an "
                f"earlier one, or use a new workdir"
            ) from e

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()
