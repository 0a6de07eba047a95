"""The networks compared here (MLP, CNN, LeNet-5) and the one place that maps a name to a module.

Models see normalised images of shape (batch, 28, 28, 1) and return float32 logits (batch, 10).
They know nothing of data files, devices or optimizers.
"""

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from mnist_jax import layers, pca
from mnist_jax.errors import ConfigError

NUM_CLASSES = 10

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu,
    "gelu": nn.gelu,
    "tanh": jnp.tanh,
    "scaled_tanh": lambda x: 1.7159 * jnp.tanh(2.0 / 3.0 * x),  # LeCun et al. 1998, appendix A
    "sigmoid": nn.sigmoid,
    "silu": nn.silu,
    "elu": nn.elu,
}
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def _choice(kind: str, value: str, valid: dict[str, Any] | Sequence[str]) -> Any:
    """`valid[value]` (or `value` for a list of names); a ConfigError listing the valid names."""
    if value not in valid:
        raise ConfigError(f"unknown {kind} {value!r}; valid: {', '.join(sorted(valid))}")
    return valid[value] if isinstance(valid, dict) else value


class MLP(nn.Module):
    """Fully connected network on the flattened image."""

    hidden_sizes: Sequence[int] = (512, 512)
    activation: str = "relu"
    dropout: float = 0.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        act = _choice("activation", self.activation, ACTIVATIONS)
        x = x.reshape((x.shape[0], -1)).astype(self.dtype)
        for width in self.hidden_sizes:
            x = act(nn.Dense(width, dtype=self.dtype)(x))
            x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return nn.Dense(NUM_CLASSES, dtype=self.dtype)(x).astype(jnp.float32)


class CNN(nn.Module):
    """Blocks of 'SAME' convolutions each followed by 2x2 pooling, then dense layers."""

    channels: Sequence[int] = (32, 64)
    kernel_sizes: Sequence[int] = (5, 5)
    convs_per_block: int = 1
    pool: str = "max"
    dense: Sequence[int] = (128,)
    activation: str = "relu"
    dropout: float = 0.0
    conv_impl: str = "xla"
    pool_impl: str = "reshape"
    stem_patch: int = 1
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        if len(self.channels) != len(self.kernel_sizes):
            raise ConfigError(
                f"cnn.channels {tuple(self.channels)} and cnn.kernel_sizes "
                f"{tuple(self.kernel_sizes)} must have the same length (one per conv block)"
            )
        act = _choice("activation", self.activation, ACTIVATIONS)
        x = layers.space_to_depth(x.astype(self.dtype), self.stem_patch)
        for features, size in zip(self.channels, self.kernel_sizes, strict=True):
            for i in range(self.convs_per_block):
                # The block's last conv skips an odd map's last row/column: pooling drops them.
                pooled = self.pool != "none" and i == self.convs_per_block - 1
                odd = (pooled and x.shape[1] % 2 == 1, pooled and x.shape[2] % 2 == 1)
                padding = layers.same_padding(size, odd)
                x = layers.Conv(features, size, padding, impl=self.conv_impl, dtype=self.dtype)(x)
                x = act(x)
            x = layers.pool2x2(x, self.pool, self.pool_impl)
        x = x.reshape((x.shape[0], -1))
        for width in self.dense:
            x = nn.Dropout(self.dropout, deterministic=not train)(x)
            x = act(nn.Dense(width, dtype=self.dtype)(x))
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return nn.Dense(NUM_CLASSES, dtype=self.dtype)(x).astype(jnp.float32)


class LeNet5(nn.Module):
    """LeNet-5: C1 6@5x5 (on the 28x28 image padded to 32x32), S2, C3 16@5x5, S4, 120-84-10.

    C3 is fully connected to S2's six maps (the 1998 paper's sparse table is a detail of its time)
    and the output is a dense softmax layer instead of RBF units, as in every modern rendition.
    """

    activation: str = "tanh"
    pool: str = "avg"
    conv_impl: str = "xla"
    pool_impl: str = "reshape"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        del train  # no dropout in LeNet-5
        act = _choice("activation", self.activation, ACTIVATIONS)
        x = x.astype(self.dtype)
        x = act(layers.Conv(6, 5, "SAME", impl=self.conv_impl, dtype=self.dtype)(x))  # 28x28x6
        x = layers.pool2x2(x, self.pool, self.pool_impl)  # 14x14x6
        x = act(layers.Conv(16, 5, "VALID", impl=self.conv_impl, dtype=self.dtype)(x))  # 10x10x16
        x = layers.pool2x2(x, self.pool, self.pool_impl)  # 5x5x16
        x = x.reshape((x.shape[0], -1))
        x = act(nn.Dense(120, dtype=self.dtype)(x))
        x = act(nn.Dense(84, dtype=self.dtype)(x))
        return nn.Dense(NUM_CLASSES, dtype=self.dtype)(x).astype(jnp.float32)


class Projected(nn.Module):
    """A network on flat vectors behind a fixed input projection (PCA fitted on the train split).

    The projection is a constant of the compiled program, not a parameter: it is neither trained
    nor counted, and the data stays uint8 images on the device.
    """

    inner: nn.Module
    projection: pca.Projection

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        return self.inner(pca.project(x, self.projection), train=train)


def project_inputs(model: nn.Module, projection: pca.Projection | None) -> nn.Module:
    """`model` fed the PCA scores of its input when the dataset carries a projection."""
    return model if projection is None else Projected(model, projection)


def _mlp(config: ml_collections.ConfigDict, dtype: Any) -> nn.Module:
    c = config.mlp
    return MLP(tuple(c.hidden_sizes), c.activation, c.dropout, dtype)


def _cnn(config: ml_collections.ConfigDict, dtype: Any) -> nn.Module:
    c = config.cnn
    if c.stem_patch < 1 or 28 % c.stem_patch:
        raise ConfigError(f"cnn.stem_patch must divide 28 (1, 2, 4, 7, ...), got {c.stem_patch}")
    return CNN(
        channels=tuple(c.channels),
        kernel_sizes=tuple(c.kernel_sizes),
        convs_per_block=c.convs_per_block,
        pool=c.pool,
        dense=tuple(c.dense),
        activation=c.activation,
        dropout=c.dropout,
        conv_impl=config.layers.conv_impl,
        pool_impl=config.layers.pool_impl,
        stem_patch=c.stem_patch,
        dtype=dtype,
    )


def _lenet5(config: ml_collections.ConfigDict, dtype: Any) -> nn.Module:
    c = config.lenet5
    return LeNet5(c.activation, c.pool, config.layers.conv_impl, config.layers.pool_impl, dtype)


MODELS: dict[str, Callable[[ml_collections.ConfigDict, Any], nn.Module]] = {
    "mlp": _mlp,
    "cnn": _cnn,
    "lenet5": _lenet5,
}


def create_model(config: ml_collections.ConfigDict) -> nn.Module:
    """The module named by `config.model`, built from its config section; checks every choice."""
    build = _choice("model", config.model, MODELS)
    pca_components = config.data.get("pca_components", 0) if "data" in config else 0
    if pca_components and config.model != "mlp":
        raise ConfigError(
            f"data.pca_components={pca_components} needs model='mlp' (PCA scores are flat "
            f"vectors, not images); {config.model!r} needs data.pca_components=0"
        )
    model = build(config, _choice("dtype", config.dtype, DTYPES))
    choices = {
        "activation": ACTIVATIONS,
        "pool": layers.POOLS,
        "conv_impl": layers.CONV_IMPLS,
        "pool_impl": layers.POOL_IMPLS,
    }
    for field, valid in choices.items():
        if hasattr(model, field):  # fail at start-up, not inside the first compiled step
            _choice(f"{config.model} {field}", getattr(model, field), valid)
    return model


def init_params(model: nn.Module, rng: jax.Array) -> Any:
    """Parameters for a batch of MNIST-shaped inputs."""
    return model.init(rng, jnp.zeros((1, 28, 28, 1), jnp.float32))["params"]


def count_params(params: Any) -> int:
    return sum(int(x.size) for x in jax.tree.leaves(params))
