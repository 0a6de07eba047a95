"""Logits of many runs on many labelled image sets, compiling each program once.

The runs of one model (its seeds) share one architecture, so one compiled evaluation program
per (model, image set) serves all of them: only the variables change. A set (the test split,
all its corrupted copies concatenated, an external set) is placed on the devices once per
model and evaluated in large padded batches, every image counted (training.evaluator).
"""

from typing import Any

import flax.linen as nn
import numpy as np

from mnist_jax.data import Split
from mnist_jax.training.evaluator import SplitEvaluator
from mnist_jax.training.parallel import Parallel


class Scorer:
    """Cache of SplitEvaluators, one per (model, set, parallel mode, batch, formulation)."""

    def __init__(self, batch_size: int):
        self.batch_size = batch_size
        self._evaluators: dict[tuple, SplitEvaluator] = {}

    def evaluator(
        self, par: Parallel, model: nn.Module, set_name: str, split: Split, conv_impl: str = "auto"
    ) -> SplitEvaluator:
        key = (model, set_name, id(split), par.mode, par.cpu_kernels, par.shards, conv_impl)
        if key not in self._evaluators:
            self._evaluators[key] = SplitEvaluator(
                par, model, split, self.batch_size, conv_impl=conv_impl
            )
        return self._evaluators[key]

    def logits(
        self, par: Parallel, model: nn.Module, variables_dev: Any, set_name: str, split: Split,
        conv_impl: str = "auto",
    ) -> tuple[dict[str, float], np.ndarray]:  # fmt: skip
        """(loss/accuracy/count, logits (N, 10)) of `split` under replicated variables."""
        return self.evaluator(par, model, set_name, split, conv_impl)(variables_dev)
