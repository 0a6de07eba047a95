"""The convolutional network: conv32-pool-conv64-pool-dense128 with dropout, Adam, cosine decay."""

import ml_collections

from mnist_jax.configs import default


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = default.get_config()
    config.model = "cnn"
    config.num_epochs = 12
    config.schedule.name = "cosine"
    config.data.augment_shift = 2  # random +-2 px translations
    return default.with_variant(config, variant)
