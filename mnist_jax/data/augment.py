"""On-device training augmentation, keyed per example so that results do not depend on batching."""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from mnist_jax.errors import ConfigError

# Streams of an example's key: each transform folds its own number in.
_SHIFT_STREAM = 1


@dataclasses.dataclass(frozen=True)
class AugmentSpec:
    """Which augmentations a run applies, from its `config.data` (all off by default)."""

    shift: int = 0  # random translation by up to this many whole pixels in x and y

    @classmethod
    def from_config(cls, data: Any) -> "AugmentSpec":
        shift = data.get("augment_shift", 0)
        if isinstance(shift, bool) or not isinstance(shift, int) or not 0 <= shift <= 14:
            raise ConfigError(f"data.augment_shift={shift!r} is not an integer in [0, 14]")
        return cls(shift=shift)

    @property
    def is_identity(self) -> bool:
        return self.shift == 0


def augment(images: jax.Array, keys: jax.Array, spec: AugmentSpec) -> jax.Array:
    """uint8 images (N, 28, 28), one key per image -> augmented uint8 images."""
    if spec.is_identity:
        return images
    shift_keys = jax.vmap(jax.random.fold_in, (0, None))(keys, _SHIFT_STREAM)
    return random_shift(images, shift_keys, spec.shift)


def random_shift(images: jax.Array, keys: jax.Array, max_shift: int) -> jax.Array:
    """Translate each uint8 image by up to `max_shift` pixels in x and y, filling with background.

    One key per image, so the augmentation of an example depends on its key alone (not on the
    batch it shares a device with). Runs on the device inside the train step.
    """
    if max_shift <= 0:
        return images
    size = images.shape[-1]
    padded = jnp.pad(images, ((0, 0), (max_shift, max_shift), (max_shift, max_shift)))

    def shift_one(image: jax.Array, key: jax.Array) -> jax.Array:
        dy, dx = jax.random.randint(key, (2,), 0, 2 * max_shift + 1)
        return jax.lax.dynamic_slice(image, (dy, dx), (size, size))

    return jax.vmap(shift_one)(padded, keys)
