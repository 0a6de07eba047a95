"""configs/cnn.py with Simard et al.'s elastic distortion added to its augmentation (alpha 34 px,
sigma 4 px, composed into the same single resampling as the shifts, rotations and scaling): the
cost of elastic augmentation per train step, against configs/cnn.py in the same benchmark run.
"""

import ml_collections

from mnist_jax.configs import cnn


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = cnn.get_config(variant)
    config.data.augment_elastic_alpha = 34.0
    config.data.augment_elastic_sigma = 4.0
    return config
