"""A small ResNet with BatchNorm: 3x3 stem, stages of 16, 32 and 64 channels (one basic block
each, stride-2 downsampling), global average pooling; +-2 px shifts, Adam with a one-cycle schedule.
"""

import ml_collections

from mnist_jax.configs import default


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = default.get_config()
    config.model = "resnet"
    config.num_epochs = 6
    config.batch_size = 128
    config.optimizer.learning_rate = 3e-3
    config.schedule.name = "onecycle"
    config.data.augment_shift = 2  # random +-2 px translations
    return default.with_variant(config, variant)
