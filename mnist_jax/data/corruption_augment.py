"""Training-time corruption: the corruptions of corruptions.py as an augmentation.

`data.augment_corruptions` names some of them and `data.augment_corruption_prob` the share of
training examples that get one, at a random severity up to its default, so that a model can be
trained on some corruption families and scored on the others (the comparison reports which it
saw: evaluation/robustness.py).
"""

import jax
import jax.numpy as jnp

from mnist_jax.core.errors import ConfigError
from mnist_jax.data import corruptions
from mnist_jax.data.augment import CORRUPTION_STREAM, AugmentSpec


def check(spec: AugmentSpec) -> None:
    """config.data.augment_corruptions: known names, each once."""
    for name in spec.corruptions:
        try:
            corruptions.get(name)
        except ConfigError as e:
            raise ConfigError(f"config.data.augment_corruptions: {e}") from None
    if len(set(spec.corruptions)) != len(spec.corruptions):
        raise ConfigError(f"config.data.augment_corruptions names one twice: {spec.corruptions}")


def augment(images: jax.Array, keys: jax.Array, spec: AugmentSpec) -> jax.Array:
    """Training-time corruption of uint8 images (N, 28, 28), one key per example: with
    probability `spec.corruption_prob` an example gets one of `spec.corruptions` (uniformly
    chosen) at a severity uniform in [0, its default]; the rest stay as they are.

    Everything is drawn from the example's own key (augment.py's stream 4), so, as the other
    augmentations, the result is a function of (image, key) alone. Every named corruption is
    computed for the whole batch and one is selected per example: cheap for noise and contrast,
    a blur's cost for the blurs."""
    if not spec.corrupts:
        return images
    names = spec.corruptions
    defaults = jnp.array([corruptions.get(n).default_severity for n in names], jnp.float32)
    keys = jax.vmap(jax.random.fold_in, (0, None))(keys, CORRUPTION_STREAM)
    split = jax.vmap(lambda k: jax.random.split(k, 4))(keys)  # apply, which, severity, noise
    apply = jax.vmap(jax.random.uniform)(split[:, 0]) < spec.corruption_prob
    which = jax.vmap(lambda k: jax.random.randint(k, (), 0, len(names)))(split[:, 1])
    severity = jax.vmap(jax.random.uniform)(split[:, 2]) * defaults[which]

    def one(fn):  # a per-example severity: each image corrupted on its own
        return jax.vmap(lambda x, k, s: fn(x[None], k[None], s)[0])(images, split[:, 3], severity)

    out = images
    for i, name in enumerate(names):
        out = jnp.where((apply & (which == i))[:, None, None], one(corruptions.get(name).fn), out)
    return out
