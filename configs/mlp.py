"""The fully connected baseline ("ANN"): 784-512-512-10, dropout, +-2 px shifts, Adam, cosine."""

import ml_collections

from mnist_jax.configs import default


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = default.get_config()
    config.model = "mlp"
    config.num_epochs = 20
    config.schedule.name = "cosine"
    config.data.augment_shift = 2  # random +-2 px translations: keeps val loss falling
    return default.with_variant(config, variant)
