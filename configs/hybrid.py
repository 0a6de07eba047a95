"""The hybrid network: conv4-pool-conv16-pool (5x5, 'SAME'), flattened to 784 values, into a
512-512-10 MLP head with configs/mlp.py's dropout, trained with configs/mlp.py's recipe (taken
from it). The head stays 512-512, the width the hybrid study measured (experiments/README.md).

`--config.hybrid.channels="()"` gives exactly configs/mlp.py's network at width 512;
experiments/hybrid.py varies the number and width of the conv layers.
"""

import ml_collections

from mnist_jax.configs import default, mlp


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = mlp.get_config()  # the MLP's optimizer, schedule, epochs and augmentation
    config.model = "hybrid"
    config.hybrid.channels = (4, 16)
    config.hybrid.hidden_sizes = (512, 512)
    config.hybrid.dropout = config.mlp.dropout
    config.hybrid.activation = config.mlp.activation
    return default.with_variant(config, variant)
