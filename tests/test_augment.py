"""On-device augmentation: random translations that keep the digit and depend only on the key."""

import jax
import jax.numpy as jnp
import numpy as np

from mnist_jax.data import augment, load_mnist


def test_random_shift_translates_within_bounds(mnist_dir):
    train, _ = load_mnist(mnist_dir)
    images = jnp.asarray(train.images[:64])
    keys = jax.random.split(jax.random.key(0), 64)
    shifted = np.asarray(augment.random_shift(images, keys, 2))
    assert shifted.shape == images.shape and shifted.dtype == np.uint8
    moved = 0
    for original, out in zip(np.asarray(images), shifted, strict=True):
        padded = np.pad(original, 2)  # zero (background) fill, as a translation should
        found = [
            (dy, dx)
            for dy in range(5)
            for dx in range(5)
            if np.array_equal(padded[dy : dy + 28, dx : dx + 28], out)
        ]
        assert found, "output is not a translation of the input"
        moved += found[0] != (2, 2)
    assert moved > 40  # 24 of 25 offsets move the image


def test_random_shift_depends_only_on_each_key():
    images = jnp.asarray(np.random.default_rng(0).integers(0, 255, (8, 28, 28), dtype=np.uint8))
    keys = jax.random.split(jax.random.key(1), 8)
    full = augment.random_shift(images, keys, 3)
    halves = [augment.random_shift(images[i : i + 4], keys[i : i + 4], 3) for i in (0, 4)]
    assert jnp.array_equal(full, jnp.concatenate(halves))
    assert jnp.array_equal(augment.random_shift(images, keys, 0), images)
