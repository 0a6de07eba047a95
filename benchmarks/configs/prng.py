"""configs/mlp.py or configs/cnn.py drawing its random streams (initialisation, shuffling,
dropout, augmentation) from another jax.random PRNG: `prng.py:MODEL_IMPL`, e.g.
`benchmarks/configs/prng.py:cnn_rbg` or `:mlp_unsafe_rbg`, for benchmarks/RESULTS.md's PRNG rows.
"""

import ml_collections

from mnist_jax.configs import cnn, mlp
from mnist_jax.core.errors import ConfigError

BASES = {"mlp": mlp, "cnn": cnn}


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    model, _, impl = variant.partition("_")
    if model not in BASES or not impl:
        raise ConfigError(
            f"prng.py variant {variant!r}: give MODEL_IMPL with MODEL in {', '.join(BASES)} "
            "and IMPL a config.prng_impl value, e.g. cnn_rbg"
        )
    config = BASES[model].get_config()
    config.prng_impl = impl
    return config
