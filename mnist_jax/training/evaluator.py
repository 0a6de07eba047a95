"""Run a model over every example of a split, on all devices: the last batch is padded and the
padding dropped, so every example counts exactly once.

Used by the training loop (validation and test metrics) and by evaluation (logits). The devices
compute logits; the host computes the metrics from them in float64, in dataset order, so the
numbers do not depend on how many devices shared the work.
"""

import math
import time
from typing import Any

import flax.linen as nn
import numpy as np

from mnist_jax.core import logs
from mnist_jax.core.errors import ConfigError
from mnist_jax.data import Split
from mnist_jax.training import steps
from mnist_jax.training.parallel import Parallel


def metrics_from_logits(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Mean cross-entropy and accuracy, in float64; non-finite logits give a NaN loss, silently
    (the divergence guard reports it)."""
    z = logits.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        top = z.max(-1, keepdims=True)
        log_norm = top[:, 0] + np.log(np.exp(z - top).sum(-1))
        loss = log_norm - z[np.arange(len(labels)), labels]
    return {
        "loss": float(loss.mean()),
        "accuracy": float((z.argmax(-1) == labels).mean()),
        "count": len(labels),
    }


class SplitEvaluator:
    """A split placed on the devices once, and one compiled program that evaluates it."""

    def __init__(
        self, par: Parallel, model: nn.Module, split: Split, batch_size: int,
        conv_impl: str = "auto", pool_impl: str = "auto",
    ):  # fmt: skip
        self.par = par
        self.split = split
        self.num_examples = len(split)
        # Eval batches do not change results, so round up to a multiple of the device count
        # (of the fixed shards where there are some: then they set every shape, not the devices).
        unit = par.num_devices if par.shards is None else par.shards
        if unit % par.num_devices:
            raise ConfigError(
                f"parallel.tree_shards={par.shards} cannot be split over {par.num_devices} "
                f"devices; evaluate on a device count that divides it"
            )
        self.global_batch = unit * math.ceil(min(batch_size, self.num_examples) / unit)
        self.num_batches = math.ceil(self.num_examples / self.global_batch)
        pad = self.num_batches * self.global_batch - self.num_examples
        images = np.concatenate([split.images, np.zeros((pad, *split.images.shape[1:]), np.uint8)])
        self._images = par.replicate(images)
        self._fn = steps.make_eval(
            model, self.global_batch, par.num_devices, self.num_batches, conv_impl, pool_impl,
            par.shards,
        )  # fmt: skip
        self._program = None
        self.compile_seconds = 0.0

    def compile(self, variables_dev: Any) -> float:
        if self._program is None:
            what = f"Compiling the eval program ({self.num_examples} examples)"
            with logs.heartbeat(what, done=True):
                self._program, self.compile_seconds = self.par.compile(
                    self._fn,
                    (variables_dev, self._images),
                    replicated_args=2,
                    per_device_outputs=True,
                )
        return self.compile_seconds

    def __call__(self, variables_dev: Any) -> tuple[dict[str, float], np.ndarray]:
        """Mean loss and accuracy over the split, and the logits (num_examples, classes)."""
        self.compile(variables_dev)
        start = time.perf_counter()
        with logs.heartbeat(f"Evaluating {self.num_examples} examples"):
            device_logits = self._program(variables_dev, self._images)
            x = self.par.gather_shards(device_logits)  # (devices, batches, local, classes)
        logits = x.transpose(1, 0, 2, 3).reshape(-1, x.shape[-1])[: self.num_examples]
        metrics = metrics_from_logits(logits, self.split.labels)
        metrics["seconds"] = time.perf_counter() - start
        return metrics, logits
