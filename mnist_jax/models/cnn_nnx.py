"""The convolutional network of cnn.py written in Flax NNX: what a model looks like when written
the way Flax now teaches, plugged into the same contract (registry.py bridges it to Linen)."""

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from mnist_jax.core.checks import check_rate, check_sizes
from mnist_jax.core.errors import ConfigError
from mnist_jax.models import layers, nnx_layers
from mnist_jax.models.registry import INPUT_SHAPE, NUM_CLASSES, choice, register


@register("cnn_nnx")
class CNNNNX(nnx.Module):
    """'SAME' (or 'VALID') convolutions in blocks (`convs_per_block` each), 2x2 pooling, dense
    layers, dropout; a `stem_patch` x `stem_patch` space-to-depth stem; BatchNorm after every
    convolution with `batch_norm`. The same fields and computation as cnn.CNN."""

    def __init__(
        self, *, channels: Sequence[int] = (32, 64), kernel_sizes: Sequence[int] = (5, 5),
        convs_per_block: int = 1, pool: str = "max", padding: str = "SAME",
        input_norm: str = "dataset",
        dense: Sequence[int] = (128,), activation: str = "relu", dropout: float = 0.0,
        stem_patch: int = 1,
        batch_norm: bool = False, dtype: Any = jnp.float32, rngs: nnx.Rngs,
    ):  # fmt: skip
        check_sizes("channels", channels, allow_empty=False)
        check_sizes("kernel_sizes", kernel_sizes, allow_empty=False)
        if len(channels) != len(kernel_sizes):
            raise ConfigError(f"channels={tuple(channels)} and kernel_sizes={tuple(kernel_sizes)} "
                              "must have the same length (one per conv block)")  # fmt: skip
        check_sizes("convs_per_block", [convs_per_block])
        check_sizes("dense", dense)
        self.pool = choice("pool", pool, layers.POOLS)
        choice("padding", padding, layers.PADDINGS)
        self.input_norm = choice("input_norm", input_norm, layers.INPUT_NORMS)
        self.act = choice("activation", activation, layers.ACTIVATIONS)
        check_rate("dropout", dropout)
        if not isinstance(stem_patch, int) or stem_patch < 1 or 28 % stem_patch:
            raise ConfigError(f"stem_patch={stem_patch!r} must divide 28 (1, 2, 4, 7, ...)")
        layers.check_kernels_fit(kernel_sizes, stem_patch, convs_per_block, padding, pool)
        self.stem_patch, self.batch_norm, self.dtype = stem_patch, batch_norm, dtype
        size, features = INPUT_SHAPE[0] // stem_patch, INPUT_SHAPE[2] * stem_patch**2
        # Layers are named attributes (conv0, norm0, dense0, ...): string keys in the variables.
        k = 0
        for width, kernel in zip(channels, kernel_sizes, strict=True):
            for i in range(convs_per_block):
                # The block's last conv skips an odd map's last row/column: pooling drops them.
                pooled = pool != "none" and i == convs_per_block - 1
                size = layers.conv_output_size(size, kernel, padding)
                pads = layers.conv_padding(kernel, (pooled and size % 2 == 1,) * 2, padding)
                setattr(self, f"conv{k}", nnx_layers.Conv(
                    features, width, kernel, padding=pads, use_bias=not batch_norm,
                    dtype=dtype, rngs=rngs,
                ))  # fmt: skip
                if batch_norm:
                    setattr(self, f"norm{k}", nnx_layers.BatchNorm(width, dtype=dtype))
                features, k = width, k + 1
            size = size // 2 if pool != "none" else size
        self.blocks = (len(channels), convs_per_block)
        features *= size * size
        for i, width in enumerate(dense):
            setattr(self, f"dense{i}", nnx.Linear(features, width, dtype=dtype, rngs=rngs))
            features = width
        self.num_dense = len(dense)
        self.out = nnx.Linear(features, NUM_CLASSES, dtype=dtype, rngs=rngs)
        self.drop = nnx_layers.Dropout(dropout, rngs=rngs)

    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        x = layers.input_standardization(x, self.input_norm)
        x = layers.space_to_depth(x.astype(self.dtype), self.stem_patch)
        blocks, per_block = self.blocks
        for b in range(blocks):
            for i in range(per_block):
                k = b * per_block + i
                x = getattr(self, f"conv{k}")(x)
                if self.batch_norm:
                    x = getattr(self, f"norm{k}")(x, train=train)
                x = self.act(x)
            x = layers.pool2x2(x, self.pool)
        x = x.reshape((x.shape[0], -1))
        for i in range(self.num_dense):
            x = self.act(getattr(self, f"dense{i}")(self.drop(x, deterministic=not train)))
        x = self.drop(x, deterministic=not train)
        return self.out(x).astype(jnp.float32)
