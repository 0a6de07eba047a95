"""conv5x5x32-pool-conv5x5x64-pool-dense128 CNN (dropout 0.5, +-2 px shifts) on full-resolution
inputs with `stable` CPU kernels: the network timed as configs/cnn.py in benchmarks/RESULTS.md's
earlier runs, kept so that throughput stays comparable.
"""

import ml_collections

from mnist_jax.configs import default


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = default.get_config()
    config.model = "cnn"
    config.num_epochs = 12
    config.schedule.name = "cosine"
    config.data.augment_shift = 2
    return default.with_variant(config, variant)
