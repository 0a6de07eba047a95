"""LeNet-5 (LeCun, Bottou, Bengio & Haffner 1998)."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mnist_jax.models import layers
from mnist_jax.models.registry import NUM_CLASSES, choice, register


@register("lenet5")
class LeNet5(nn.Module):
    """C1 6@5x5 (on the 28x28 image padded to 32x32), S2, C3 16@5x5, S4, 120-84-10.

    C3 is fully connected to S2's six maps (the 1998 paper's sparse table is a detail of its time)
    and the output is a dense softmax layer instead of RBF units, as in every modern rendition.
    """

    activation: str = "tanh"
    pool: str = "avg"
    dtype: Any = jnp.float32

    def __post_init__(self) -> None:
        choice("activation", self.activation, layers.ACTIVATIONS)
        choice("pool", self.pool, ("max", "avg"))
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        del train  # no dropout in LeNet-5
        act = layers.ACTIVATIONS[self.activation]
        x = x.astype(self.dtype)
        x = act(layers.Conv(6, 5, padding="SAME", dtype=self.dtype)(x))  # 28x28x6
        x = layers.pool2x2(x, self.pool)  # 14x14x6
        x = act(layers.Conv(16, 5, padding="VALID", dtype=self.dtype)(x))  # 10x10x16
        x = layers.pool2x2(x, self.pool)  # 5x5x16
        x = x.reshape((x.shape[0], -1))
        x = act(nn.Dense(120, dtype=self.dtype)(x))
        x = act(nn.Dense(84, dtype=self.dtype)(x))
        return nn.Dense(NUM_CLASSES, dtype=self.dtype)(x).astype(jnp.float32)
