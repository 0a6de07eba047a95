"""The splits a run trains, selects and tests on, as host arrays.

Validation is held out of the official training set by a seeded permutation, then a stratified
`train_fraction` of the rest is kept, then (optionally) a PCA projection is fitted on what remains:
every step depends only on the data config, so the validation and test sets are the same for every
model seed, device count and data-amount ablation.
"""

import dataclasses
from collections.abc import Callable

import ml_collections
import numpy as np

from mnist_jax.core.errors import ConfigError, DataError
from mnist_jax.data import pca, sources
from mnist_jax.data.preprocess import IMAGE_SHAPE

NUM_CLASSES = 10

# Separate random streams, so that the held-out images do not depend on the subsample and vice
# versa even when both use the same seed.
_VALIDATION_STREAM = 0
_SUBSAMPLE_STREAM = 1


@dataclasses.dataclass(frozen=True)
class Split:
    """One split as host arrays: images (N, 28, 28) uint8 and labels (N,) int32.

    Images stay uint8 (47 MB for the training set instead of 188 MB as float32) until `normalize`
    runs on the device.
    """

    images: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        # Catch mismatched or mis-shaped arrays here rather than as a shape error deep in a
        # compiled step.
        if self.images.ndim != 3 or self.images.shape[1:] != IMAGE_SHAPE:
            raise DataError(f"images have shape {self.images.shape}, expected (N, 28, 28)")
        if self.labels.ndim != 1 or len(self.labels) != len(self.images):
            raise DataError(
                f"labels have shape {self.labels.shape}, expected ({len(self.images)},) "
                "to match the images"
            )

    def __len__(self) -> int:
        return len(self.labels)


@dataclasses.dataclass(frozen=True)
class Dataset:
    """The splits a run uses; `validation` is None when validation_fraction == 0.

    `projection` is the PCA fitted on `train` when data.pca_components > 0 (applied by the model,
    see models.project_inputs), else None.
    """

    train: Split
    validation: Split | None
    test: Split
    projection: pca.Projection | None = None


def _check_fraction(name: str, value: float, *, zero_ok: bool, one_ok: bool) -> None:
    is_number = isinstance(value, int | float | np.integer | np.floating)
    if not is_number or isinstance(value, bool):
        in_range = False
    else:
        in_range = (value >= 0 if zero_ok else value > 0) and (value <= 1 if one_ok else value < 1)
    if not in_range:
        valid = ("[0, " if zero_ok else "(0, ") + ("1]" if one_ok else "1)")
        raise ConfigError(f"{name}={value!r} is not a fraction in {valid}")


def _check_seed(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise ConfigError(f"{name}={value!r} is not a non-negative integer")


def _take(split: Split, indices: np.ndarray) -> Split:
    return Split(split.images[indices], split.labels[indices])


def split_validation(train: Split, fraction: float, seed: int = 0) -> tuple[Split, Split | None]:
    """Holds out `fraction` of the training split as validation: (train, validation).

    The held-out set is a function of (fraction, seed) alone, so it stays fixed across model
    seeds, device counts and data-amount ablations. Both parts keep the original order.
    """
    _check_fraction("validation_fraction", fraction, zero_ok=True, one_ok=False)
    _check_seed("split_seed", seed)
    if fraction == 0:
        return train, None
    n_val = max(1, round(len(train) * fraction))
    if n_val >= len(train):
        raise ConfigError(
            f"validation_fraction={fraction!r} of {len(train)} examples leaves none for training"
        )
    perm = np.random.default_rng([seed, _VALIDATION_STREAM]).permutation(len(train))
    return _take(train, np.sort(perm[n_val:])), _take(train, np.sort(perm[:n_val]))


def subsample(split: Split, fraction: float, seed: int = 0) -> Split:
    """Keeps `fraction` of each class (at least one example per class), for data-amount studies.

    Stratified so that small fractions keep the class balance of the full split; deterministic in
    (fraction, seed). Per-class rounding means the total can differ from fraction * N by a few.
    """
    _check_fraction("train_fraction", fraction, zero_ok=False, one_ok=True)
    _check_seed("split_seed", seed)
    if fraction == 1:
        return split
    rng = np.random.default_rng([seed, _SUBSAMPLE_STREAM])
    keep = []
    for label in np.unique(split.labels):
        members = np.flatnonzero(split.labels == label)
        count = max(1, round(len(members) * fraction))
        keep.append(rng.permutation(members)[:count])
    return _take(split, np.sort(np.concatenate(keep)))


def load_mnist(data_dir: str = "", source: str = "idx") -> tuple[Split, Split]:
    """The official (train, test) splits from `source` ('idx' files or a prepared 'tfds')."""
    if source not in _LOADERS:
        raise ConfigError(
            f"config.data.source={source!r} is not one of {', '.join(map(repr, sources.SOURCES))}"
        )
    train, test = _LOADERS[source](data_dir)
    return Split(*train), Split(*test)


_LOADERS: dict[str, Callable[[str], tuple[sources.Arrays, sources.Arrays]]] = {
    "idx": sources.load_idx,
    "tfds": sources.load_tfds,
}


def load_dataset(config: ml_collections.ConfigDict) -> Dataset:
    """Builds the run's splits from the `data` config; the test set is always all 10k images.

    Validation is split off first, then `train_fraction` is applied to what remains, so the
    validation set is the same for every data-amount ablation. A PCA projection, if asked for, is
    fitted on that final training split only.
    """
    try:
        source, data_dir = config.source, config.dir
        validation_fraction, split_seed = config.validation_fraction, config.split_seed
    except (AttributeError, KeyError) as e:
        raise ConfigError(
            f"data config is missing a key ({e}); needed: source, dir, validation_fraction, "
            "split_seed (and optionally train_fraction)"
        ) from None
    train_fraction = config.get("train_fraction", 1.0)
    pca_components = config.get("pca_components", 0)
    if source not in _LOADERS:
        raise ConfigError(
            f"config.data.source={source!r} is not one of {', '.join(map(repr, sources.SOURCES))}"
        )
    # Fail on bad values before spending time on loading.
    _check_fraction("validation_fraction", validation_fraction, zero_ok=True, one_ok=False)
    _check_fraction("train_fraction", train_fraction, zero_ok=False, one_ok=True)
    _check_seed("split_seed", split_seed)
    pca.check_components(pca_components)

    train, test = load_mnist(data_dir, source)
    train, validation = split_validation(train, validation_fraction, split_seed)
    train = subsample(train, train_fraction, split_seed)
    projection = pca.fit(train.images, pca_components) if pca_components else None
    return Dataset(train=train, validation=validation, test=test, projection=projection)
