"""CNN speedrun: the fastest path found to >= 99.0% mean test accuracy on this 2-core CPU.

conv16-pool-conv32-pool-dense10 (3x3, no hidden dense layer, no dropout), two epochs over all
60,000 training images in whole-epoch compiled scans, Adam with a one-cycle schedule, label
smoothing. `python -m mnist_jax.benchmark` times it over 5 seeds (benchmarks/RESULTS.md).
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
    config = default.get_config()
    config.model = "cnn"
    config.cnn.channels = (16, 32)
    config.cnn.kernel_sizes = (3, 3)
    config.cnn.dense = ()  # the pooled 7x7x32 maps go straight to the 10 logits
    config.cnn.dropout = 0.0
    config.data.validation_fraction = 0.0  # train on all 60,000 images; test on all 10,000
    config.num_epochs = 2
    config.batch_size = 128
    config.optimizer.learning_rate = 1e-2
    config.schedule.name = "onecycle"
    config.label_smoothing = 0.1
    config.steps_per_chunk = 1_000_000  # one compiled scan per epoch
    config.checkpoint.every_epochs = 1_000  # only at the end: no save overlaps training
    return config
