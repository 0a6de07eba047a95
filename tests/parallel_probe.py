"""Prints the per-step training losses of a short MLP run as JSON; run in a subprocess whose
XLA_FLAGS fix the number of simulated devices (see test_parallel.py)."""

import json
import sys

import jax
import numpy as np

from configs import mlp
from mnist_jax import input_pipeline, models, optim, steps
from mnist_jax.parallel import Parallel


def main(mode: str, dropout: float, num_steps: int) -> None:
    config = mlp.get_config()
    config.mlp.dropout = dropout
    par = Parallel(mode)
    data = input_pipeline.load_dataset(config.data)
    model = models.create_model(config)
    steps_per_epoch = len(data.train) // config.batch_size
    tx = optim.create_optimizer(config, optim.create_schedule(config, steps_per_epoch))
    root = jax.random.key(config.seed)
    init_key, shuffle_key, dropout_key = (jax.random.fold_in(root, i) for i in range(3))
    state = steps.TrainState.create(models.init_params(model, init_key), tx)
    layout = steps.Layout(config.batch_size, par.num_devices)
    fn = steps.make_train_chunk(model, tx, layout, len(data.train), 1)
    train_data = par.replicate((data.train.images, data.train.labels))
    state_dev = par.replicate(jax.device_get(state))
    args = (state_dev, *train_data, shuffle_key, dropout_key, np.int32(0))
    program, _ = par.compile(fn, args, replicated_args=3, donate_state=True)
    epoch_key = jax.random.fold_in(shuffle_key, 1)
    losses = []
    for i in range(num_steps):
        state_dev, sums = program(state_dev, *train_data, epoch_key, dropout_key, np.int32(i))
        sums = par.to_host(sums)
        losses.append(float(sums["loss"]) / int(sums["count"]))
    print(json.dumps({"devices": par.num_devices, "losses": losses}))


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]), int(sys.argv[3]))
