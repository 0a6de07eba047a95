"""A network on flat vectors behind a fixed input projection (PCA fitted on the train split)."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


class Projected(nn.Module):
    """`inner` fed `(x - mean) @ components` of its flattened input.

    The projection is a constant of the compiled program, not a parameter: it is neither trained
    nor counted, and the data stays uint8 images on the device. `projection` is any object with
    `mean` (784,) and `components` (784, k) arrays (data.pca.Projection).
    """

    inner: nn.Module
    projection: Any

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        x = jnp.reshape(x, (x.shape[0], -1)).astype(jnp.float32)
        scores = (x - self.projection.mean) @ self.projection.components
        return self.inner(scores, train=train)


def project_inputs(model: nn.Module, projection: Any | None) -> nn.Module:
    """`model` fed the PCA scores of its input when the dataset carries a projection."""
    return model if projection is None else Projected(model, projection)
