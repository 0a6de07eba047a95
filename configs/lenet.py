"""LeNet-5 (LeCun et al. 1998): 6 and 16 feature maps, 120-84-10, tanh, average subsampling."""

import ml_collections

from mnist_jax.configs import default


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = default.get_config()
    config.model = "lenet5"
    config.num_epochs = 15
    config.schedule.name = "cosine"
    return default.with_variant(config, variant)
