"""Run a model over every example of a split, on all devices: the last batch is padded and masked.

Used by the training loop (validation and test metrics) and by the evaluation binary (logits).
"""

import math
import time
from typing import Any

import flax.linen as nn
import numpy as np

from mnist_jax.data import Split
from mnist_jax.training import steps
from mnist_jax.training.parallel import Parallel


class SplitEvaluator:
    """A split placed on the devices once, and one compiled program that evaluates it."""

    def __init__(
        self, par: Parallel, model: nn.Module, split: Split, batch_size: int,
        conv_impl: str = "auto", pool_impl: str = "auto",
    ):  # fmt: skip
        self.par = par
        self.num_examples = len(split)
        # Eval batches do not change results, so round up to a multiple of the device count.
        self.global_batch = par.num_devices * math.ceil(
            min(batch_size, self.num_examples) / par.num_devices
        )
        self.num_batches = math.ceil(self.num_examples / self.global_batch)
        padded = self.num_batches * self.global_batch
        pad = padded - self.num_examples
        images = np.concatenate([split.images, np.zeros((pad, *split.images.shape[1:]), np.uint8)])
        labels = np.concatenate([split.labels, np.zeros((pad,), np.int32)])
        self._data = par.replicate((images, labels))
        self._fn = steps.make_eval(
            model, self.global_batch, par.num_devices, self.num_batches, conv_impl, pool_impl
        )
        self._program = None
        self.compile_seconds = 0.0

    def _args(self, variables_dev: Any) -> tuple:
        return (variables_dev, *self._data, np.int32(self.num_examples))

    def compile(self, variables_dev: Any) -> float:
        if self._program is None:
            self._program, self.compile_seconds = self.par.compile(
                self._fn,
                self._args(variables_dev),
                replicated_args=3,
                per_device_outputs=(False, True),
            )
        return self.compile_seconds

    def __call__(self, variables_dev: Any) -> tuple[dict[str, float], Any]:
        """Mean loss and accuracy over the split, and the (device) logits for `logits()`."""
        self.compile(variables_dev)
        start = time.perf_counter()
        sums, logits = self._program(*self._args(variables_dev))
        sums = self.par.to_host(sums)
        count = int(sums["count"])
        assert count == self.num_examples, (count, self.num_examples)
        metrics = {
            "loss": float(sums["loss"]) / count,
            "accuracy": float(sums["correct"]) / count,
            "count": count,
            "seconds": time.perf_counter() - start,
        }
        return metrics, logits

    def logits(self, device_logits: Any) -> np.ndarray:
        """Per-example logits in dataset order, padding removed: (num_examples, classes)."""
        x = self.par.gather_shards(device_logits)  # (devices, batches, local, classes)
        x = x.transpose(1, 0, 2, 3).reshape(-1, x.shape[-1])
        return x[: self.num_examples]
