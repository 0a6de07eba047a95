"""The fully connected network ("ANN"): the flattened image through dense layers."""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mnist_jax.core.checks import check_rate, check_sizes
from mnist_jax.models import layers
from mnist_jax.models.registry import NUM_CLASSES, choice, register


def dense_head(
    x: jax.Array, hidden_sizes: Sequence[int], act: Any, dropout: float, dtype: Any, train: bool
) -> jax.Array:
    """Dense-activation-dropout layers, then the 10 logits; called inside a compact module, whose
    layer names (Dense_0, ...) it takes, so the hybrid's head is the MLP parameter for parameter."""
    for width in hidden_sizes:
        x = act(nn.Dense(width, dtype=dtype)(x))
        x = layers.Dropout(dropout)(x, deterministic=not train)
    return nn.Dense(NUM_CLASSES, dtype=dtype)(x).astype(jnp.float32)


@register("mlp")
class MLP(nn.Module):
    """Dense layers of `hidden_sizes`, each followed by the activation and dropout.

    `input_norm` 'per_image' first standardises each image alone (layers.input_standardization),
    as the CNN's option does."""

    hidden_sizes: Sequence[int] = (512, 512)
    activation: str = "relu"
    dropout: float = 0.0
    input_norm: str = "dataset"
    dtype: Any = jnp.float32

    def __post_init__(self) -> None:
        check_sizes("hidden_sizes", self.hidden_sizes)
        choice("activation", self.activation, layers.ACTIVATIONS)
        choice("input_norm", self.input_norm, layers.INPUT_NORMS)
        check_rate("dropout", self.dropout)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        act = layers.ACTIVATIONS[self.activation]
        x = layers.input_standardization(x, self.input_norm)
        x = x.reshape((x.shape[0], -1)).astype(self.dtype)
        return dense_head(x, self.hidden_sizes, act, self.dropout, self.dtype, train)
