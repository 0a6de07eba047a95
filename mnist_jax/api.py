"""The package from Python: train a config, load a finished run, classify digits.

  import mnist_jax
  summary = mnist_jax.train("mlp:quick", "runs/demo")     # a shipped config (or a path)
  run = mnist_jax.load_run("runs/demo")
  probs = run.predict_proba(images)                         # uint8 (N, 28, 28) -> (N, 10)
  labels = run.predict_files(["digit.png"])                 # any PNG/JPEG, MNIST's own way

These functions log progress (absl, INFO) to stderr; `mnist_jax.log_to_stderr("warning")`
before them keeps them quiet. Everything here is built on mnist_jax.training.train and
mnist_jax.evaluation.runs, which the binaries use too.
"""

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import flax.linen as nn
import ml_collections
import numpy as np
from absl import logging

from mnist_jax.core import configuration, logs
from mnist_jax.core.errors import ConfigError, UserError
from mnist_jax.data import images as images_lib
from mnist_jax.evaluation import metrics, runs
from mnist_jax.training import rundir

ConfigLike = ml_collections.ConfigDict | str | os.PathLike


def load_config(config_or_spec: ConfigLike, variant: str = "") -> ml_collections.ConfigDict:
    """A ConfigDict as it is, or `configs/x.py[:variant]` / a shipped name (`cnn`, `cnn:quick`);
    `variant` applies a variant (e.g. 'quick') to either."""
    if isinstance(config_or_spec, ml_collections.ConfigDict):
        config = ml_collections.ConfigDict(config_or_spec.to_dict())  # the caller's stays as is
        if variant:
            from mnist_jax.configs import default

            config = default.with_variant(config, variant)
        return config
    if not isinstance(config_or_spec, str | os.PathLike):
        raise ConfigError(
            f"config {config_or_spec!r}: expected an ml_collections ConfigDict, a config file "
            "path ('configs/cnn.py:quick') or a shipped config name ('cnn')"
        )
    spec = os.fspath(config_or_spec)
    if variant:
        if ":" in spec:
            raise ConfigError(f"config {spec!r} names a variant and variant={variant!r} too")
        spec = f"{spec}:{variant}"
    return configuration.load(spec)


def train(config_or_spec: ConfigLike, workdir: str | os.PathLike, variant: str = "") -> dict:
    """Trains a config in `workdir` (or resumes it, or returns a finished run's summary).

    Returns the summary (summary.json): test accuracy and loss of the best epoch by validation
    loss on all 10,000 test images, timings, provenance.
    """
    logs.default_to_info()
    from mnist_jax.training import train as train_lib  # deferred: only training needs it

    return train_lib.train_and_evaluate(load_config(config_or_spec, variant), os.fspath(workdir))


@dataclasses.dataclass
class Run(runs.Run):
    """A trained run: the run directory evaluation opens (config, summary, metrics, newest
    checkpoint step) with its model and best variables (by validation loss), ready to classify
    uint8 MNIST-form digits (white on black, 28x28) on the default device."""

    model: nn.Module | None = None
    variables: Any = None
    batch_size: int = 2048

    @property
    def name(self) -> str:
        """`parent/seed_<k>` for a seed directory, else the directory's name (run_name)."""
        return run_name(self.workdir)

    @property
    def checkpoint_step(self) -> int:
        return self.step

    def logits(self, images: Any, *, raw: bool = False) -> np.ndarray:
        """float32 logits (N, 10) of digits in MNIST's form: uint8 (N, 28, 28), white on black,
        centred as MNIST's are (the test set, `load_digits`); a dark digit on a light ground
        is refused, not misread. `raw=True` takes any digit images (a sequence of 2-D or
        colour arrays of any size, either polarity) and brings each to that form first, as
        `predict_files` does for files."""
        if raw:
            images = to_mnist_form(images)
        return runs.logits(self.model, self.variables, check_mnist_form(images), self.batch_size)

    def predict_proba(self, images: Any, *, raw: bool = False) -> np.ndarray:
        """Class probabilities (N, 10) in float64; `images` as for `logits`."""
        return metrics.softmax(self.logits(images, raw=raw))

    def predict(self, images: Any, *, raw: bool = False) -> np.ndarray:
        """The most probable class (N,); `images` as for `logits`."""
        return self.logits(images, raw=raw).argmax(-1)

    def predict_files(self, paths: Sequence[str | os.PathLike]) -> np.ndarray:
        """The most probable class (N,) of image files, brought to MNIST's form first."""
        return self.predict(load_digits(paths))


def load_digits(paths: Sequence[str | os.PathLike]) -> np.ndarray:
    """PNG/JPEG files -> uint8 (N, 28, 28) in MNIST's form (grayscale, white on black, 20x20
    box, centred by mass: mnist_jax.data.images); a DataError names a file that cannot be."""
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    digits = [images_lib.load_digit(p) for p in paths]
    return np.stack(digits) if digits else np.zeros((0, 28, 28), np.uint8)


def to_mnist_form(images: Any) -> np.ndarray:
    """Digit images of any size, dtype, colour and polarity -> uint8 (N, 28, 28) in MNIST's form
    (mnist_jax.data.images.to_mnist, as predict_files and the server use)."""
    digits = [images_lib.to_mnist(image, source=f"image {i}") for i, image in enumerate(images)]
    return np.stack(digits) if digits else np.zeros((0, 28, 28), np.uint8)


# MNIST's digits leave a 4-pixel border black; a border this bright is a light background.
_LIGHT_BORDER = 128


def check_mnist_form(images: Any) -> np.ndarray:
    """`images` as uint8 (N, 28, 28) white on black, or a UserError naming what is wrong."""
    array = np.asarray(images)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[1:] != (28, 28):
        raise UserError(
            f"images must be uint8 of shape (N, 28, 28) in MNIST's form, got {array.dtype} "
            f"{array.shape}; raw=True brings digit images of any size and kind to that form"
        )
    border = np.concatenate(
        [array[:, 0], array[:, -1], array[:, 1:-1, 0], array[:, 1:-1, -1]], axis=1
    )
    light = np.flatnonzero(np.median(border, axis=1) >= _LIGHT_BORDER)
    if light.size:
        raise UserError(
            f"image {light[0]} is a dark digit on a light background (median border pixel "
            f"{np.median(border[light[0]]):.0f}); MNIST's form is white on black: pass raw=True, "
            "or 255 - images for inverted MNIST digits"
        )
    return array


def run_name(workdir: str | os.PathLike) -> str:
    """The directory's name; `parent/seed_<k>` for a seed directory (runs/compare/mlp/seed_0
    -> 'mlp/seed_0'), so the runs of one comparison have distinct names."""
    path = Path(os.path.abspath(workdir))
    return f"{path.parent.name}/{path.name}" if rundir.is_seed_dir(path) else path.name


def load_run(workdir: str | os.PathLike, data_dir: str = "") -> Run:
    """Opens a run directory (config.json + a checkpoint) and restores its best variables,
    verified against their checksums. `data_dir` matters only for PCA-input runs (their
    projection is refitted on the training split)."""
    logs.default_to_info()
    opened = runs.open_run(workdir)
    model = runs.build_model(opened.config, data_dir)
    variables = runs.restore_best(opened, model)
    logging.info("Loaded %s: %s, checkpoint step %d", workdir, opened.config.model, opened.step)
    fields = {f.name: getattr(opened, f.name) for f in dataclasses.fields(opened)}
    return Run(**fields, model=model, variables=variables)
