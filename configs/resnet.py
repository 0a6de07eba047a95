"""A small ResNet with BatchNorm: 3x3 stem, stages of 16, 32 and 64 channels (one basic block
each, stride-2 downsampling), global average pooling; Adam with a one-cycle schedule over 15
epochs and on-device augmentation (+-2 px shifts, +-8 degree rotations, +-8% scale).

Seed 0 reaches 99.55% on the 10,000 test images (epoch kept by validation loss: the last), in
about 14 minutes on a 2-core CPU (README, Reference configs); with 6 epochs and shifts alone it
reached 99.40%, with 8 epochs and this augmentation 99.46%.
"""

import ml_collections

from mnist_jax.configs import default


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = default.get_config()
    config.model = "resnet"
    config.num_epochs = 15
    config.batch_size = 128
    config.optimizer.learning_rate = 3e-3
    config.schedule.name = "onecycle"
    config.data.augment_shift = 2  # random +-2 px translations
    config.data.augment_rotation = 8.0  # degrees
    config.data.augment_scale = 0.08
    return default.with_variant(config, variant)
