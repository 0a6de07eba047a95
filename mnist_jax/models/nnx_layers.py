"""The layers of layers.py for Flax NNX models: the same computations (layers.conv,
layers.dropout, layers.batch_statistics), so an NNX model gets the backend's formulation, the
device-count-independent dropout masks and the global batch statistics that a Linen model gets.

Parameter and statistic names match Linen's (kernel, bias; scale, bias; mean, var), and
BatchNorm's running averages are `nnx.BatchStat`s, which the Linen bridge (registry.py) keeps in
the 'batch_stats' collection, as the trainer expects.
"""

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from mnist_jax.models import layers


class Conv(nnx.Module):
    """Square convolution (any stride) with optional bias, HWIO kernel (layers.Conv's)."""

    def __init__(
        self, in_features: int, features: int, kernel_size: int, *, strides: int = 1,
        padding: layers.Padding = "SAME", use_bias: bool = True, dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):  # fmt: skip
        shape = (kernel_size, kernel_size, in_features, features)
        self.kernel = nnx.Param(jax.nn.initializers.lecun_normal()(rngs.params(), shape))
        self.bias = nnx.Param(jnp.zeros((features,))) if use_bias else None
        self.strides, self.padding, self.dtype = strides, padding, dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        bias = None if self.bias is None else self.bias[...]
        return layers.conv(x, self.kernel[...], bias, self.padding, self.strides, self.dtype)


class Dropout(nnx.Module):
    """layers.Dropout: each example's mask from the 'dropout' stream and its global position."""

    def __init__(self, rate: float, *, rngs: nnx.Rngs):
        self.rate, self.rngs = rate, rngs

    def __call__(self, x: jax.Array, *, deterministic: bool) -> jax.Array:
        if deterministic or self.rate == 0.0:
            return x
        return layers.dropout(x, self.rate, self.rngs.dropout())


class BatchNorm(nnx.Module):
    """layers.BatchNorm: the global batch's statistics in training, running averages else."""

    def __init__(
        self, features: int, *, momentum: float = 0.9, epsilon: float = 1e-5,
        dtype: Any = jnp.float32,
    ):  # fmt: skip
        self.scale, self.bias = nnx.Param(jnp.ones((features,))), nnx.Param(jnp.zeros((features,)))
        self.mean = nnx.BatchStat(jnp.zeros((features,)))
        self.var = nnx.BatchStat(jnp.ones((features,)))
        self.momentum, self.epsilon, self.dtype = momentum, epsilon, dtype

    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        if train:
            mean, var = layers.batch_statistics(x)
            m = self.momentum
            self.mean[...] = m * self.mean[...] + (1.0 - m) * mean
            self.var[...] = m * self.var[...] + (1.0 - m) * var
        else:
            mean, var = self.mean[...], self.var[...]
        return layers.normalize(x, mean, var, self.scale[...], self.bias[...], self.epsilon,
                                self.dtype)  # fmt: skip
