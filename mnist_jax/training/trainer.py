"""One builder for everything a config compiles to: model, optimizer, train state, programs.

`Trainer.build(config, par, dataset)` is what the training loop, the benchmark and the tests
use, so that a program timed by the benchmark is the program a run trains with.
"""

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import ml_collections
import numpy as np
import optax

from mnist_jax import models
from mnist_jax.core import logs
from mnist_jax.core.errors import ConfigError
from mnist_jax.data import Dataset, Split, augment
from mnist_jax.training import memory, optim, steps
from mnist_jax.training.evaluator import SplitEvaluator
from mnist_jax.training.parallel import Parallel

# jax.random's PRNG implementations: JAX's counter-based hash (its default), and XLA's
# RngBitGenerator ('rbg': its split and fold_in still hash; 'unsafe_rbg': those too by XLA).
PRNG_IMPLS = ("threefry2x32", "rbg", "unsafe_rbg")


@dataclasses.dataclass(frozen=True)
class Keys:
    """The random streams of a run, all derived from `config.seed`."""

    init: jax.Array
    shuffle: jax.Array  # the epoch's permutation: fold_in(shuffle, epoch)
    dropout: jax.Array  # per step: fold_in(dropout, step) -> augmentation and dropout

    @classmethod
    def from_seed(cls, seed: int, impl: str = "threefry2x32") -> "Keys":
        root = jax.random.key(seed, impl=impl)  # the keys derived from it keep its PRNG
        return cls(*(jax.random.fold_in(root, i) for i in range(3)))


def _check(config: ml_collections.ConfigDict, par: Parallel, num_train: int) -> int:
    """Settings that cannot run on this data and these devices; returns steps per epoch."""
    par.check_divisible("batch_size", config.batch_size)
    if config.batch_size > num_train:
        raise ConfigError(
            f"batch_size={config.batch_size} is larger than the {num_train} training examples"
        )
    local_batch = config.batch_size // par.num_devices
    p = config.parallel
    if p.reduction == "tree":
        shards = p.tree_shards
        if shards < 1 or shards % par.num_devices or config.batch_size % shards:
            raise ConfigError(
                f"parallel.tree_shards={shards} must be a multiple of the {par.num_devices} "
                f"devices and divide batch_size={config.batch_size}"
            )
        if config.microbatches != 1:
            raise ConfigError(
                f"microbatches={config.microbatches} with parallel.reduction='tree': the tree's "
                "shards already split each device's batch; set microbatches=1"
            )
        if p.cpu_kernels == "fast":
            raise ConfigError(
                "parallel.cpu_kernels='fast' with parallel.reduction='tree': only 'stable' "
                "kernels give the same bits on any device count; use 'stable' or 'auto'"
            )
    elif config.microbatches < 1 or local_batch % config.microbatches:
        raise ConfigError(
            f"microbatches={config.microbatches} must be >= 1 and divide the per-device batch "
            f"{local_batch} (batch_size={config.batch_size} over {par.num_devices} devices)"
        )
    return num_train // config.batch_size


@dataclasses.dataclass
class Trainer:
    """A config's model, optimizer and compiled programs on the devices of `par`."""

    config: ml_collections.ConfigDict
    par: Parallel
    model: nn.Module
    schedule: optax.Schedule
    tx: optax.GradientTransformation
    options: steps.StepOptions
    steps_per_epoch: int
    keys: Keys

    @classmethod
    def build(cls, config: ml_collections.ConfigDict, par: Parallel, dataset: Dataset) -> "Trainer":
        """Checks the settings against the data and the devices (each value on its own was
        checked by validation.validate, which train.train_and_evaluate runs first); compiles
        nothing yet."""
        model = models.create_model(config)
        model = models.project_inputs(model, dataset.projection)
        shapes = models.check_contract(model, config.model)
        num_train = len(dataset.train)
        steps_per_epoch = _check(config, par, num_train)
        schedule = optim.create_schedule(config, steps_per_epoch)
        tx = optim.create_optimizer(config, schedule)
        options = steps.StepOptions(
            global_batch=config.batch_size,
            num_devices=par.num_devices,
            num_train=num_train,
            label_smoothing=config.label_smoothing,
            augment=augment.AugmentSpec.from_config(config.data),
            microbatches=config.microbatches,
            reduction=config.parallel.reduction,
            tree_shards=config.parallel.tree_shards,
            conv_impl=config.layers.conv_impl,
            pool_impl=config.layers.pool_impl,
        )
        if options.parts > 1 and options.reduction == "mean" and _has_state(model):
            raise ConfigError(
                f"microbatches={config.microbatches} would split the batch statistics of "
                f"{config.model!r} (it keeps batch_stats); set microbatches=1"
            )
        memory.check_fits(config, model, shapes, options.local_batch // options.parts)
        return cls(
            config, par, model, schedule, tx, options, steps_per_epoch,
            Keys.from_seed(config.seed, config.prng_impl),
        )  # fmt: skip

    def init_state(self) -> steps.TrainState:
        """The initial train state from the seed, as host numpy arrays."""
        with logs.heartbeat(f"Initialising the {self.config.model} parameters"):
            variables = models.init_variables(self.model, self.keys.init)
            params, model_state = models.split_variables(variables)
            return jax.device_get(steps.TrainState.create(params, model_state, self.tx))

    def train_program(
        self, num_steps: int, state_dev: Any, train_data: tuple[Any, Any]
    ) -> tuple[Callable, float]:
        """The compiled scan of `num_steps` steps, and its compile seconds."""
        fn = steps.make_train_chunk(self.model, self.tx, self.options, num_steps)
        args = (state_dev, *train_data, self.keys.shuffle, self.keys.dropout, np.int32(0))
        what = f"Compiling the train program ({num_steps} steps of batch {self.config.batch_size})"
        with logs.heartbeat(what, done=True):
            return self.par.compile(
                fn, args, replicated_args=3, donate_state=True, per_device_outputs=(False, True)
            )

    def evaluator(self, split: Split) -> SplitEvaluator:
        return SplitEvaluator(
            self.par, self.model, split, self.config.eval_batch_size,
            self.config.layers.conv_impl, self.config.layers.pool_impl,
        )  # fmt: skip

    def chunks(self) -> list[tuple[int, int]]:
        """(first step, number of steps) of each compiled scan of an epoch; at most two lengths."""
        n = self.steps_per_epoch
        size = self.config.steps_per_chunk or math.ceil(n / 10)
        return [(s, min(size, n - s)) for s in range(0, n, size)]


def _has_state(model: nn.Module) -> bool:
    variables = jax.eval_shape(lambda: models.init_variables(model, jax.random.key(0)))
    return len(variables) > 1
