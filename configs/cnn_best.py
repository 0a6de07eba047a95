"""The strongest CNN measured here: two 3x3 convolutions per block, BatchNorm, 22 epochs.

A 2x2 space-to-depth stem (28x28x1 -> 14x14x4), then (conv3x3-BN-ReLU) x2 at 32 channels, 2x2
max pooling, (conv3x3-BN-ReLU) x2 at 64 channels, pooling, dense 256 with dropout 0.3; Adam
with a one-cycle schedule peaking at 5e-3 over 22 epochs, the model being the moving average of
the weights (decay 0.999); the augmentation of configs/cnn.py (+-2 px shifts, +-8 degree
rotations, +-8% scale). The epoch kept is the one with the lowest validation loss (6,000
held-out images), never chosen on the test set. Chosen over the same network at 30 epochs, with
or without BatchNorm, and at 22 epochs with stronger augmentation (+-12 degrees, +-12% scale,
+-10 degree shear) by the lowest validation loss, seed 0 (README, Reference configs).
Measured over seeds 0-4: 99.53 ± 0.02% on the 10,000 test images, ensemble 99.64%, 9-14 minutes
per seed on the 2-core CPU beside other trainings. BatchNorm makes it less robust to corruptions
than configs/cnn.py (README, Robustness).
"""

import ml_collections

from mnist_jax.configs import cnn, default


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = cnn.get_config()  # its stem, kernels, EMA, schedule and augmentation
    config.cnn.channels = (32, 64)
    config.optimizer.name = "adam"
    config.optimizer.weight_decay = 0.0
    config.cnn.convs_per_block = 2
    config.cnn.batch_norm = True
    config.cnn.dense = (256,)
    config.cnn.dropout = 0.3
    config.num_epochs = 22
    config.optimizer.learning_rate = 5e-3
    return default.with_variant(config, variant)
