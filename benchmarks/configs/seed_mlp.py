"""The seed projects' MLP, exactly: 784-512-512-10, ReLU, dropout 0.2, 669,706 parameters; Adam
at 1e-3, batch 128, no augmentation. benchmarks/torch/side_by_side.py times it beside the same
network in PyTorch.
"""

import ml_collections

from mnist_jax.configs import default


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = default.get_config()
    config.model = "mlp"
    config.mlp.hidden_sizes = (512, 512)
    config.mlp.dropout = 0.2
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
