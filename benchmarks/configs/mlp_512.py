"""784-512-512-10 MLP (dropout 0.2, +-2 px shifts) with `stable` CPU kernels: the network timed as
configs/mlp.py in benchmarks/RESULTS.md's earlier runs, kept so that throughput stays comparable.
"""

import ml_collections

from mnist_jax.configs import default


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = default.get_config()
    config.model = "mlp"
    config.num_epochs = 20
    config.schedule.name = "cosine"
    config.data.augment_shift = 2
    return default.with_variant(config, variant)
