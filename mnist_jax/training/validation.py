"""Every value of a training config checked before any work, so that a bad setting fails in one
line naming the key, the value and what is valid, not an hour in.

Training, sweeps (their dry runs too) and the benchmark call `validate` first. Values that only
the data or the devices can judge (a batch larger than the training set, a batch that does not
split over the devices) are checked by the trainer once those are known.
"""

import math

import ml_collections

from mnist_jax import models
from mnist_jax.configs import default
from mnist_jax.core.checks import check_choice, check_range, suggest
from mnist_jax.core.errors import ConfigError
from mnist_jax.data import augment, corruption_augment, sources
from mnist_jax.data.pca import check_components
from mnist_jax.models import layers
from mnist_jax.training import optim, parallel, rundir, steps, trainer


def validate(config: ml_collections.ConfigDict) -> None:
    """Every value of a training config, checked without touching data or devices."""
    check_known_keys(config)
    models.create_model(config)
    check_choice("dtype", config.dtype, list(models.registry.DTYPES))
    check_range("seed", config.seed, 0, 2**32 - 1, integer=True)
    check_choice("prng_impl", config.prng_impl, trainer.PRNG_IMPLS)
    d = config.data
    check_choice("data.source", d.source, sources.SOURCES)
    if d.source == "tfds":
        sources.check_tfds_installed()
    check_range("data.validation_fraction", d.validation_fraction, 0, 1, hi_open=True)
    check_range("data.train_fraction", d.train_fraction, 0, 1, lo_open=True)
    check_range("data.split_seed", d.split_seed, 0, 2**32 - 1, integer=True)
    check_components(d.pca_components)
    if d.pca_components and config.model != "mlp":
        raise ConfigError(
            f"data.pca_components={d.pca_components} needs model='mlp' (PCA scores are flat "
            f"vectors, not images); {config.model!r} needs data.pca_components=0"
        )
    corruption_augment.check(augment.AugmentSpec.from_config(d))
    check_choice("layers.conv_impl", config.layers.conv_impl, layers.CONV_IMPLS)
    check_choice("layers.pool_impl", config.layers.pool_impl, layers.POOL_IMPLS)
    optim.validate(config)
    check_range("label_smoothing", config.label_smoothing, 0, 1, hi_open=True)
    check_range("batch_size", config.batch_size, 1, integer=True)
    check_range("microbatches", config.microbatches, 1, integer=True)
    check_range("eval_batch_size", config.eval_batch_size, 1, integer=True)
    check_range("num_epochs", config.num_epochs, 1, integer=True)
    check_range("steps_per_chunk", config.steps_per_chunk, 0, integer=True)
    check_range("early_stopping.patience", config.early_stopping.patience, 0, integer=True)
    check_range("early_stopping.min_delta", config.early_stopping.min_delta, 0)
    check_choice("parallel.mode", config.parallel.mode, parallel.MODES)
    check_choice("parallel.reduction", config.parallel.reduction, steps.REDUCTIONS)
    check_choice("parallel.cpu_kernels", config.parallel.cpu_kernels, parallel.CPU_KERNEL_CHOICES)
    check_range("parallel.tree_shards", config.parallel.tree_shards, 1, integer=True)
    check_range("checkpoint.every_epochs", config.checkpoint.every_epochs, 1, integer=True)
    check_range("checkpoint.keep", config.checkpoint.keep, 1, integer=True)
    check_range("log_every_seconds", config.log_every_seconds, 0, lo_open=True)
    check_range("log_every_steps", config.log_every_steps, 0, integer=True)
    check_range("test_every_epochs", config.test_every_epochs, 0, integer=True)
    _check_step_count(config)  # after the values it reads are checked


def check_known_keys(config: ml_collections.ConfigDict) -> None:
    """Every key at the top level or in a section of configs/default.py is one of default.py's:
    a misspelt key set from Python (`config.num_epoch = 2`) or in a config file fails here, as
    `--config.num_epoch` does. A section default.py lacks is a family added by a user (its
    model's own keys), taken as it is.
    """
    defaults = default.get_config()
    known = rundir.flatten(defaults.to_dict())
    sections = {k for k, v in defaults.items() if isinstance(v, ml_collections.ConfigDict)}
    for key in rundir.flatten(config.to_dict()):
        section, dot, _ = key.partition(".")
        if key not in known and (not dot or section in sections):
            raise ConfigError(
                f"unknown config key {key!r}{suggest(key, known)}; every key is listed in "
                "configs/default.py"
            )


MAX_STEPS = 2**31 - 1  # the step counter is an int32 on the device
TRAIN_IMAGES = 60_000  # MNIST's training split: the most examples an epoch can have


def _check_step_count(config: ml_collections.ConfigDict) -> None:
    """Every step numbered within int32 (num_epochs=10**9 overflowed it after config.json
    and the lock were written)."""
    per_epoch = math.ceil(TRAIN_IMAGES * config.data.train_fraction / config.batch_size)
    if config.num_epochs * per_epoch > MAX_STEPS:
        raise ConfigError(
            f"num_epochs={config.num_epochs}: up to {config.num_epochs * per_epoch:,} steps of "
            f"batch {config.batch_size}, more than the int32 step counter holds; at most "
            f"{MAX_STEPS // per_epoch:,} epochs"
        )
