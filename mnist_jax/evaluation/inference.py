"""Cost of a trained model's forward pass on one device: FLOPs, throughput and latency.

These measure inference as a user of the model would run it: one jitted forward pass (uint8
images in, logits out, normalisation included) on the first device of this machine. FLOPs come
from XLA's own cost analysis of that compiled program, not from a hand count.
"""

import functools
import statistics
import time
from typing import Any

import flax.linen as nn
import jax
import numpy as np

from mnist_jax.data import preprocess
from mnist_jax.models import layers


@functools.cache  # one jitted program per (model, formulation): a model's seeds share it
def _forward(model: nn.Module, conv_impl: str):
    def forward(variables: Any, images: jax.Array) -> jax.Array:
        with layers.context(conv_impl=conv_impl):
            return model.apply(variables, preprocess.normalize(images), train=False)

    return jax.jit(forward)


def flops_per_example(
    model: nn.Module, variables: Any, batch: int = 1, conv_impl: str = "auto"
) -> float | None:
    """XLA's FLOP count of the compiled forward pass over `batch` images, divided by `batch`.

    `cost_analysis()` returns a dict in current JAX and a list with one dict per program in older
    versions; None when the backend reports no count.
    """
    images = np.zeros((batch, *preprocess.IMAGE_SHAPE), np.uint8)
    cost = _forward(model, conv_impl).lower(variables, images).compile().cost_analysis()
    if isinstance(cost, list | tuple):
        cost = cost[0] if cost else None
    if not cost or "flops" not in cost:
        return None
    return float(cost["flops"]) / batch


def _tile(images: np.ndarray, n: int) -> np.ndarray:
    reps = -(-n // len(images))
    return np.concatenate([images] * reps)[:n]


def throughput(
    model: nn.Module, variables: Any, images: np.ndarray, batch: int, min_seconds: float = 1.0,
    conv_impl: str = "auto",
) -> dict[str, float]:  # fmt: skip
    """Images per second at a large batch that already lives on the device.

    Each call is timed to completion (`block_until_ready`); the figure is the batch size divided
    by the median call time, after one warm-up call, over at least 3 calls and `min_seconds`.
    """
    device = jax.devices()[0]
    forward = _forward(model, conv_impl)
    variables_dev = jax.device_put(variables, device)
    x = jax.device_put(_tile(images, batch), device)
    forward(variables_dev, x).block_until_ready()  # compile and warm up
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 3 or time.perf_counter() - start < min_seconds:
        t = time.perf_counter()
        forward(variables_dev, x).block_until_ready()
        times.append(time.perf_counter() - t)
    median = statistics.median(times)
    return {"images_per_second": batch / median, "batch": batch, "calls": len(times)}


def latency(
    model: nn.Module, variables: Any, images: np.ndarray, calls: int, conv_impl: str = "auto"
) -> dict[str, float]:
    """Milliseconds for one image, host to host: numpy image in, numpy logits out.

    This is what a caller serving single requests waits for (transfer and dispatch included).
    Median and 90th percentile of `calls` calls after 10 warm-up calls.
    """
    device = jax.devices()[0]
    forward = _forward(model, conv_impl)
    variables_dev = jax.device_put(variables, device)
    one = np.ascontiguousarray(images[:1])
    for _ in range(10):
        np.asarray(forward(variables_dev, one))
    times = []
    for i in range(calls):
        x = np.ascontiguousarray(images[i % len(images)][None])
        t = time.perf_counter()
        np.asarray(forward(variables_dev, x))
        times.append((time.perf_counter() - t) * 1e3)
    return {
        "median_ms": float(np.median(times)),
        "p90_ms": float(np.percentile(times, 90)),
        "calls": calls,
    }
