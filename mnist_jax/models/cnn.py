"""The convolutional network: blocks of convolutions each followed by 2x2 pooling, then dense."""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mnist_jax.core.checks import check_rate, check_sizes
from mnist_jax.core.errors import ConfigError
from mnist_jax.models import layers
from mnist_jax.models.registry import NUM_CLASSES, choice, register


@register("cnn")
class CNN(nn.Module):
    """Convolutions in blocks (`convs_per_block` each), pooling, dense layers, dropout.

    `padding` 'SAME' keeps each convolution's map size, 'VALID' shrinks it by kernel - 1;
    `input_norm` 'per_image' first standardises each image alone (layers.input_standardization).

    `stem_patch` > 1 starts with a space-to-depth stem (b x b patches become channels);
    `batch_norm` normalises every convolution's output (layers.BatchNorm, before the activation).
    """

    channels: Sequence[int] = (32, 64)
    kernel_sizes: Sequence[int] = (5, 5)
    convs_per_block: int = 1
    pool: str = "max"
    padding: str = "SAME"
    input_norm: str = "dataset"
    dense: Sequence[int] = (128,)
    activation: str = "relu"
    dropout: float = 0.0
    stem_patch: int = 1
    batch_norm: bool = False
    dtype: Any = jnp.float32

    def __post_init__(self) -> None:
        check_sizes("channels", self.channels, allow_empty=False)
        check_sizes("kernel_sizes", self.kernel_sizes, allow_empty=False)
        if len(self.channels) != len(self.kernel_sizes):
            raise ConfigError(
                f"channels={tuple(self.channels)} and kernel_sizes={tuple(self.kernel_sizes)} "
                "must have the same length (one per conv block)"
            )
        check_sizes("convs_per_block", [self.convs_per_block])
        check_sizes("dense", self.dense)
        choice("pool", self.pool, layers.POOLS)
        choice("padding", self.padding, layers.PADDINGS)
        choice("input_norm", self.input_norm, layers.INPUT_NORMS)
        choice("activation", self.activation, layers.ACTIVATIONS)
        check_rate("dropout", self.dropout)
        if not isinstance(self.stem_patch, int) or self.stem_patch < 1 or 28 % self.stem_patch:
            raise ConfigError(f"stem_patch={self.stem_patch!r} must divide 28 (1, 2, 4, 7, ...)")
        if not isinstance(self.batch_norm, bool):
            raise ConfigError(f"batch_norm={self.batch_norm!r} is not true or false")
        layers.check_kernels_fit(self.kernel_sizes, self.stem_patch, self.convs_per_block,
                                 self.padding, self.pool)  # fmt: skip
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        act = layers.ACTIVATIONS[self.activation]
        x = layers.input_standardization(x, self.input_norm)
        x = layers.space_to_depth(x.astype(self.dtype), self.stem_patch)
        for features, size in zip(self.channels, self.kernel_sizes, strict=True):
            for i in range(self.convs_per_block):
                # The block's last conv skips an odd map's last row/column: pooling drops them.
                pooled = self.pool != "none" and i == self.convs_per_block - 1
                out = [layers.conv_output_size(n, size, self.padding) for n in x.shape[1:3]]
                odd = (pooled and out[0] % 2 == 1, pooled and out[1] % 2 == 1)
                padding = layers.conv_padding(size, odd, self.padding)
                conv = layers.Conv(
                    features, size, padding=padding, use_bias=not self.batch_norm, dtype=self.dtype
                )
                x = conv(x)
                if self.batch_norm:
                    x = layers.BatchNorm(dtype=self.dtype)(x, train=train)
                x = act(x)
            x = layers.pool2x2(x, self.pool)
        x = x.reshape((x.shape[0], -1))
        for width in self.dense:
            x = layers.Dropout(self.dropout)(x, deterministic=not train)
            x = act(nn.Dense(width, dtype=self.dtype)(x))
        x = layers.Dropout(self.dropout)(x, deterministic=not train)
        return nn.Dense(NUM_CLASSES, dtype=self.dtype)(x).astype(jnp.float32)
