"""MLP speedrun: the fastest path found to >= 98.0% mean test accuracy on this 2-core CPU.

784-256-10 ReLU without dropout, two epochs over all 60,000 training images in whole-epoch
compiled scans, Adam with a one-cycle schedule, label smoothing. `python -m mnist_jax.benchmark`
times it over 5 seeds (benchmarks/RESULTS.md).
"""

import ml_collections

from mnist_jax.configs import default


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = default.get_config()
    config.model = "mlp"
    config.mlp.hidden_sizes = (256,)
    config.mlp.dropout = 0.0
    config.data.validation_fraction = 0.0  # train on all 60,000 images; test on all 10,000
    config.num_epochs = 2
    config.batch_size = 128
    config.optimizer.learning_rate = 4e-3
    config.schedule.name = "onecycle"
    config.label_smoothing = 0.1
    config.steps_per_chunk = 1_000_000  # one compiled scan per epoch
    config.checkpoint.every_epochs = 1_000  # only at the end: no save overlaps training
    config.parallel.cpu_kernels = "fast"  # XLA's own dots: ~2x faster at these small batches
    return default.with_variant(config, variant)
