"""The fully connected baseline ("ANN"): 784-512-512-10 with dropout, Adam with cosine decay."""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
    config = default.get_config()
    config.model = "mlp"
    config.num_epochs = 20
    config.schedule.name = "cosine"
    return config
