"""The hybrid network: conv4-pool-conv16-pool (5x5, 'SAME'), flattened to 784 values, into the
MLP's head 512-512-10 with dropout; the MLP config's training recipe (Adam, cosine, +-2 px shifts).

`--config.hybrid.channels="()"` gives exactly configs/mlp.py's network; experiments/hybrid.py
varies the number and width of the conv layers.
"""

import ml_collections

from mnist_jax.configs import default


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = default.get_config()
    config.model = "hybrid"
    config.hybrid.channels = (4, 16)
    config.num_epochs = 20
    config.schedule.name = "cosine"
    config.data.augment_shift = 2  # random +-2 px translations, as configs/mlp.py
    return default.with_variant(config, variant)
