"""A small residual network with batch normalisation for 28x28 digits (He et al. 2016).

A 3x3 stem convolution, then stages of basic blocks (two 3x3 convolutions with BatchNorm, plus
an identity or 1x1 projection shortcut); the first block of every stage after the first halves
the resolution with a stride-2 convolution. Global average pooling and one dense layer give the
logits. BatchNorm is `layers.BatchNorm`, whose statistics are the global batch's on any number
of devices; its running averages live in the 'batch_stats' collection.
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mnist_jax.core.checks import check_rate, check_sizes
from mnist_jax.core.errors import ConfigError
from mnist_jax.models import layers
from mnist_jax.models.registry import NUM_CLASSES, register


class BasicBlock(nn.Module):
    """conv3x3(stride) - BN - relu - conv3x3 - BN, added to the (projected) input, relu."""

    features: int
    strides: int = 1
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        conv = lambda k, s: layers.Conv(
            self.features, k, strides=s, use_bias=False, dtype=self.dtype
        )
        y = conv(3, self.strides)(x)
        y = nn.relu(layers.BatchNorm(dtype=self.dtype)(y, train=train))
        y = conv(3, 1)(y)
        y = layers.BatchNorm(dtype=self.dtype)(y, train=train)
        if self.strides != 1 or x.shape[-1] != self.features:
            x = conv(1, self.strides)(x)
            x = layers.BatchNorm(dtype=self.dtype)(x, train=train)
        return nn.relu(x + y)


@register("resnet")
class ResNet(nn.Module):
    """Stem of `stem_channels`, one stage per entry of `stage_channels` with `blocks` blocks."""

    stem_channels: int = 16
    stage_channels: Sequence[int] = (16, 32, 64)
    blocks: Sequence[int] = (1, 1, 1)
    dropout: float = 0.0
    dtype: Any = jnp.float32

    def __post_init__(self) -> None:
        check_sizes("stem_channels", [self.stem_channels])
        check_sizes("stage_channels", self.stage_channels, allow_empty=False)
        check_sizes("blocks", self.blocks, allow_empty=False)
        if len(self.blocks) != len(self.stage_channels):
            raise ConfigError(
                f"blocks={tuple(self.blocks)} must have one entry per stage of "
                f"stage_channels={tuple(self.stage_channels)}"
            )
        check_rate("dropout", self.dropout)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        x = layers.Conv(self.stem_channels, 3, use_bias=False, dtype=self.dtype)(
            x.astype(self.dtype)
        )
        x = nn.relu(layers.BatchNorm(dtype=self.dtype)(x, train=train))
        for stage, (features, count) in enumerate(
            zip(self.stage_channels, self.blocks, strict=True)
        ):
            for block in range(count):
                strides = 2 if stage > 0 and block == 0 else 1
                x = BasicBlock(features, strides, self.dtype)(x, train=train)
        x = x.mean(axis=(1, 2))
        x = layers.Dropout(self.dropout)(x, deterministic=not train)
        return nn.Dense(NUM_CLASSES, dtype=self.dtype)(x).astype(jnp.float32)
