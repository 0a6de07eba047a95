"""A trained run directory as an object: its config, its verified best variables, its model.

`open_run` checks everything that can be wrong with a run directory from its files alone (fast,
before any slow work); `load_model` rebuilds the model from config.json and restores the best
variables (by validation loss) from the newest checkpoint, verified against its checksums.
"""

import dataclasses
import functools
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import ml_collections
import numpy as np

from mnist_jax import models
from mnist_jax.core.errors import CheckpointError, UserError
from mnist_jax.data import load_dataset, preprocess
from mnist_jax.models import layers
from mnist_jax.training import checkpoint, rundir


@dataclasses.dataclass
class Run:
    """A run directory that has a config and at least one checkpoint."""

    workdir: Path
    config: ml_collections.ConfigDict
    config_dict: dict[str, Any]
    step: int  # the newest checkpoint, whose best variables are evaluated
    summary: dict[str, Any] | None  # None while the run has not finished
    metrics: list[dict[str, Any]]

    @property
    def name(self) -> str:
        return self.workdir.name


def open_run(workdir: str | Path) -> Run:
    """Checks that `workdir` is a run directory with a checkpoint; reads its files."""
    path = Path(workdir)
    if not path.is_dir():
        raise UserError(f"workdir {workdir} does not exist (or is not a directory)")
    files = rundir.RunDir(path)
    if not files.config_path.is_file():
        raise UserError(
            f"{workdir} is not a run directory: it has no config.json; pass directories written "
            "by python -m mnist_jax.main --workdir=..."
        )
    config_dict = rundir.read_json(files.config_path, "run config")
    summary = files.read_summary(required=rundir.SUMMARY_NUMBERS)
    metrics = files.read_metrics()
    steps = []
    if files.checkpoint_dir.is_dir():
        steps = checkpoint.Checkpointer(files.checkpoint_dir, read_only=True).steps()
    if not steps:
        raise CheckpointError(
            f"{workdir} has no checkpoint in {files.checkpoint_dir}; train it first (running "
            f"python -m mnist_jax.main again with --workdir={workdir} resumes an interrupted run)"
        )
    config = ml_collections.ConfigDict(config_dict)
    return Run(path, config, config_dict, steps[0], summary, metrics)


def build_model(config: ml_collections.ConfigDict, data_dir: str = "") -> nn.Module:
    """The run's model; a PCA-input run refits its projection on its own training split."""
    model = models.create_model(config)
    if config.data.get("pca_components", 0):
        data = ml_collections.ConfigDict(config.data.to_dict())
        data.dir = data_dir or data.dir
        model = models.project_inputs(model, load_dataset(data).projection)
    return model


def restore_best(run: Run, model: nn.Module) -> dict[str, Any]:
    """The best variables of the run's newest checkpoint, verified against its checksums."""
    # Host zeros of the variables' shapes: Orbax restores into numpy arrays, and nothing is
    # compiled (initialising the model compiled a program of about 1 s per evaluated run).
    shapes = jax.eval_shape(lambda: models.init_variables(model, jax.random.key(0)))
    template = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)
    ckpt = checkpoint.Checkpointer(run.workdir / "checkpoints", read_only=True)
    fingerprints = rundir.accepted_fingerprints(run.config_dict)
    try:
        restored = ckpt.restore(run.step, None, template, fingerprints)
    except CheckpointError as e:
        # Training moves a bad checkpoint aside and retrains from the one before; a finished
        # run (summary.json) does not train again until its summary is gone.
        first = f"delete {run.workdir}/summary.json, then " if run.summary is not None else ""
        raise CheckpointError(
            f"{e}; {run.workdir} cannot be evaluated ({first}rerun training in it to repair "
            "it, or delete the run)"
        ) from None
    want = jax.tree.map(np.shape, template)
    if jax.tree.map(np.shape, restored.best) != want:  # Orbax restores saved shapes silently
        raise CheckpointError(
            f"{run.workdir}: the checkpoint's parameter shapes do not match config.json's model "
            f"{run.config.model!r}; was config.json edited?"
        )
    return restored.best


@functools.cache
def _forward(model: nn.Module, conv_impl: str, pool_impl: str) -> Any:
    def forward(variables: Any, images: jax.Array) -> jax.Array:
        with layers.context(conv_impl=conv_impl, pool_impl=pool_impl):
            return model.apply(variables, preprocess.normalize(images), train=False)

    return jax.jit(forward)


def logits(
    model: nn.Module, variables: Any, images: np.ndarray, batch_size: int = 2048,
    conv_impl: str = "auto", pool_impl: str = "auto",
) -> np.ndarray:  # fmt: skip
    """float32 logits (N, 10) of uint8 images (N, 28, 28), in batches on the default device."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise UserError(
            f"images must be uint8 of shape (N, 28, 28), got {images.dtype} {images.shape}"
        )
    forward = _forward(model, conv_impl, pool_impl)
    out = [np.asarray(forward(variables, images[i : i + batch_size]))
           for i in range(0, len(images), batch_size)]  # fmt: skip
    return np.concatenate(out) if out else np.zeros((0, models.NUM_CLASSES), np.float32)
