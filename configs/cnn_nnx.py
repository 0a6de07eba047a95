"""configs/cnn.py's network, training and augmentation with the model written in Flax NNX
(models/cnn_nnx.py, bridged to Linen by the registry): `cnn_nnx` takes the `cnn` section's
values."""

import ml_collections

from mnist_jax.configs import cnn, default


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = cnn.get_config()
    config.model = "cnn_nnx"
    config.cnn_nnx = ml_collections.ConfigDict(config.cnn.to_dict())
    return default.with_variant(config, variant)
