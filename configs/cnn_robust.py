"""The CNN of configs/cnn.py made robust to pixel noise and to changes of brightness and contrast.

Two changes, chosen by the robustness study (experiments/robustness.py, docs/robustness.md):
  - each image is standardised on its own before the network (`cnn.input_norm='per_image'`), so
    brightness and contrast changes (affine maps of the pixels) do not reach it;
  - training-time corruption: half of the training examples get one of the noise, blur and
    contrast corruptions of data/corruptions.py at a random severity up to its default.
The other corruptions of the comparison (motion blur, the geometric ones, brightness, elastic,
stripe, fog) are never seen in training: the held-out families.
"""

import ml_collections

from mnist_jax.configs import cnn, default

# The corruption families seen in training; the comparison reports the others as held out.
TRAINING_CORRUPTIONS = ("gaussian_noise", "impulse_noise", "gaussian_blur", "contrast")


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = cnn.get_config()
    config.cnn.input_norm = "per_image"
    config.data.augment_corruptions = ",".join(TRAINING_CORRUPTIONS)
    config.data.augment_corruption_prob = 0.5
    return default.with_variant(config, variant)
