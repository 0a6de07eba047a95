"""Whether a config's training can fit in the devices' memory, known before anything is written.

A run too large for its device used to fail inside XLA with RESOURCE_EXHAUSTED, after the run
directory, its lock and checkpoints/ existed. `check_fits` refuses it at start-up from two lower
bounds, both read from shapes alone (no compilation, no allocation):

- the parameters: PARAM_COPIES float32 copies of every one;
- the activations: the outputs of the train-mode forward pass's matrix products, convolutions,
  patch concatenations (im2col) and poolings at the per-device batch, which the gradient keeps
  until the backward pass. For configs/cnn.py and its 256-, 1024- and 4096-channel variants
  this bound was 0.47-0.64 of the temporary memory XLA:CPU's memory analysis gives the
  compiled train step, so it refuses no run that fits.

Simulated CPU devices share the host's memory: their needs add up.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mnist_jax import models
from mnist_jax.core.errors import ConfigError
from mnist_jax.models import layers
from mnist_jax.models.registry import INPUT_SHAPE, apply_any

# Copies of the parameters a run holds at once: the weights, their gradients, Adam's two
# moments, the moving average, the best epoch's, and host copies for a checkpoint.
PARAM_COPIES = 8

# Primitives whose outputs XLA materialises in memory (element-wise work is fused away).
MATERIALISED = frozenset(
    {"dot_general", "conv_general_dilated", "concatenate", "reduce_max", "reduce_window_max",
     "reduce_window_sum", "reduce_window"}
)  # fmt: skip


def check_fits(
    config: ml_collections.ConfigDict, model: nn.Module, shapes: Any, batch: int
) -> None:
    """Refuses, naming the numbers, a model (variables `shapes`, per-device `batch` per
    gradient) whose training cannot fit in the local devices' memory."""
    devices = jax.local_devices()
    limit = (devices[0].memory_stats() or {}).get("bytes_limit") or _host_memory()
    if not limit:
        return
    shared = len(devices) if devices[0].platform == "cpu" else 1
    count = models.count_params(shapes["params"])
    params = PARAM_COPIES * 4 * count * shared
    what = f"this {devices[0].platform.upper()} device"
    if shared > 1:
        what = f"the host that its {shared} simulated CPU devices share"
    if params > limit:
        raise ConfigError(
            f"model {config.model!r} has {count:,} parameters: about {params / 2**30:.1f} GiB "
            f"to train ({PARAM_COPIES} float32 copies), more than the {limit / 2**30:.1f} GiB "
            f"{what} has; make config.{config.model} smaller"
        )
    kept = activations_kept(config, model, shapes, batch) * shared
    if params + kept > limit:
        raise ConfigError(
            f"model {config.model!r} at {batch} examples per device and step keeps at least "
            f"{kept / 2**30:.1f} GiB of activations for its gradient (and "
            f"{params / 2**30:.1f} GiB of parameters), more than the {limit / 2**30:.1f} GiB "
            f"{what} has; lower batch_size or make config.{config.model} smaller"
        )


def activations_kept(
    config: ml_collections.ConfigDict, model: nn.Module, shapes: Any, batch: int
) -> int:
    """Bytes of the materialised outputs of one train-mode forward pass over `batch` examples
    in the train step's formulation, traced abstractly (jax.make_jaxpr): a lower bound of what
    the gradient keeps."""
    with layers.context(
        conv_impl=config.layers.conv_impl, pool_impl=config.layers.pool_impl, differentiated=True
    ):
        return _forward_bytes(model, shapes, batch)


def _forward_bytes(model: nn.Module, shapes: Any, batch: int) -> int:
    x = jax.ShapeDtypeStruct((batch, *INPUT_SHAPE), jnp.float32)
    forward = jax.make_jaxpr(lambda v, x: apply_any(model, v, x, train=True))
    return _materialised(forward(shapes, x).jaxpr)


def _materialised(jaxpr: Any) -> int:
    total = 0
    for eqn in jaxpr.eqns:
        inner = [p for p in eqn.params.values() if hasattr(p, "eqns") or hasattr(p, "jaxpr")]
        for sub in inner:  # pjit, custom_vjp, remat, ...: the equations inside
            total += _materialised(sub.jaxpr if hasattr(sub, "jaxpr") else sub)
        if not inner and eqn.primitive.name in MATERIALISED:
            total += sum(int(np.prod(v.aval.shape)) * v.aval.dtype.itemsize for v in eqn.outvars)
    return total


def _host_memory() -> int | None:
    """The host's available memory in bytes (Linux's MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None
