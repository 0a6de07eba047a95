"""The hybrid network: k convolutional layers in front of an MLP head.

The bridge between the two models this project compares. Each convolutional layer is a 'SAME'
convolution, the activation and 2x2 max pooling; their output is flattened into exactly the
MLP's stack of dense layers. With no convolutional layers (`channels=()`) the network *is* the
MLP: the same layers, parameter names and initialisation, so the same logits from the same seed.

Four channels after one pooling (14x14x4) or sixteen after two (7x7x16) flatten to 784 values,
the size of the image itself, so the head keeps the MLP's size and shape while its input turns
from pixels into pooled features (experiments/hybrid.py).
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mnist_jax.core.checks import check_rate, check_sizes
from mnist_jax.core.errors import ConfigError
from mnist_jax.models import layers
from mnist_jax.models.mlp import dense_head
from mnist_jax.models.registry import choice, register

MAX_CONV_LAYERS = 2  # two 2x2 poolings take 28x28 to 7x7; a third would leave 3x3


@register("hybrid")
class Hybrid(nn.Module):
    """`channels` conv-activation-maxpool layers (`kernel_size` square), then the MLP head:
    dense layers of `hidden_sizes`, each followed by the activation and dropout."""

    channels: Sequence[int] = (4,)
    kernel_size: int = 5
    hidden_sizes: Sequence[int] = (512, 512)
    activation: str = "relu"
    dropout: float = 0.0
    dtype: Any = jnp.float32

    def __post_init__(self) -> None:
        check_sizes("channels", self.channels)
        if len(self.channels) > MAX_CONV_LAYERS:
            raise ConfigError(
                f"channels={tuple(self.channels)} has {len(self.channels)} conv layers; at most "
                f"{MAX_CONV_LAYERS} (each halves the image): () for the MLP, (4,), (4, 16), ..."
            )
        check_sizes("kernel_size", [self.kernel_size])
        check_sizes("hidden_sizes", self.hidden_sizes)
        choice("activation", self.activation, layers.ACTIVATIONS)
        check_rate("dropout", self.dropout)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        act = layers.ACTIVATIONS[self.activation]
        x = x.astype(self.dtype)
        for features in self.channels:
            x = act(layers.Conv(features, self.kernel_size, padding="SAME", dtype=self.dtype)(x))
            x = layers.pool2x2(x, "max")
        x = x.reshape((x.shape[0], -1))
        return dense_head(x, self.hidden_sizes, act, self.dropout, self.dtype, train)
