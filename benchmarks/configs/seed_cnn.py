"""The seed projects' CNN, exactly: conv3x3x32-pool-conv3x3x64-pool-dense64 with 'VALID'
convolutions (28 -> 26 -> 13 -> 11 -> 5), ReLU, max pooling, dropout 0.25 before the dense layers,
121,930 parameters; Adam at 1e-3, batch 128, no augmentation. benchmarks/torch/side_by_side.py
times it beside the same network in PyTorch.
"""

import ml_collections

from mnist_jax.configs import default


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = default.get_config()
    config.model = "cnn"
    config.cnn.channels = (32, 64)
    config.cnn.kernel_sizes = (3, 3)
    config.cnn.padding = "VALID"
    config.cnn.dense = (64,)
    config.cnn.dropout = 0.25
    config.cnn.stem_patch = 1
    config.optimizer.name = "adam"
    config.optimizer.learning_rate = 1e-3
    config.optimizer.weight_decay = 0.0
    config.optimizer.ema_decay = 0.0
    config.schedule.name = "constant"
    config.batch_size = 128
    config.data.augment_shift = 0
    config.data.augment_rotation = 0.0
    config.data.augment_scale = 0.0
    return default.with_variant(config, variant)
