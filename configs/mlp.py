"""The fully connected baseline ("ANN"): 784-512-512-10 with dropout, for the main comparison.

Two hidden ReLU layers, dropout 0.1, Adam with a one-cycle schedule over 12 epochs, and on-device
augmentation (+-2 px shifts, +-10 degree rotations, +-10% scale), which helps an MLP far more than
a CNN: it has no built-in translation invariance. XLA's own CPU dot kernels ('fast').
"""

import ml_collections

from mnist_jax.configs import default


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = default.get_config()
    config.model = "mlp"
    config.mlp.dropout = 0.1  # augmentation does most of the regularising
    config.num_epochs = 12
    config.optimizer.learning_rate = 2e-3
    config.schedule.name = "onecycle"
    config.data.augment_shift = 2  # random +-2 px translations
    config.data.augment_rotation = 10.0  # degrees
    config.data.augment_scale = 0.1
    config.parallel.cpu_kernels = "auto"  # 'fast', or 'stable' under the tree reduction
    config.test_every_epochs = 0  # no test pass while training: `evaluate` scores the test set
    return default.with_variant(config, variant)
