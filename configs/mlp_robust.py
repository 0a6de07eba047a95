"""The MLP of configs/mlp.py with configs/cnn_robust.py's two changes, for the robust comparison.

  - each image is standardised on its own before the network (`mlp.input_norm='per_image'`), so
    brightness and contrast changes (affine maps of the pixels) do not reach it;
  - training-time corruption: half of the training examples get one of the noise, blur and
    contrast corruptions of data/corruptions.py at a random severity up to its default.
The same families are held out as for cnn_robust (motion blur, the geometric ones, brightness,
elastic, stripe, fog): the two robust recipes compare like for like (docs/robustness.md).
"""

import ml_collections

from mnist_jax.configs import cnn_robust, default, mlp


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = mlp.get_config()
    config.mlp.input_norm = "per_image"
    config.data.augment_corruptions = ",".join(cnn_robust.TRAINING_CORRUPTIONS)
    config.data.augment_corruption_prob = 0.5
    return default.with_variant(config, variant)
