"""The hybrid network: conv4-pool-conv16-pool (5x5, 'SAME'), flattened to 784 values, into the
MLP's head 512-512-10 with its dropout, trained with configs/mlp.py's recipe (taken from it).

`--config.hybrid.channels="()"` gives exactly configs/mlp.py's network; experiments/hybrid.py
varies the number and width of the conv layers.
"""

import ml_collections

from mnist_jax.configs import default, mlp


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = mlp.get_config()  # the MLP's optimizer, schedule, epochs and augmentation
    config.model = "hybrid"
    config.hybrid.channels = (4, 16)
    config.hybrid.hidden_sizes = config.mlp.hidden_sizes
    config.hybrid.dropout = config.mlp.dropout
    config.hybrid.activation = config.mlp.activation
    return default.with_variant(config, variant)
