"""Devices, and turning a per-device function into a `jax.pmap` or `jax.jit(jax.shard_map)` program.

Both modes run the same per-device code from steps.py over the named axis `steps.AXIS` spanning
every device of every process. What differs is only how values live on the devices:

- pmap: every per-device argument carries a leading axis of device size;
- shard_map: values are global `jax.Array`s, replicated (`P()`) over a one-axis mesh.

`Parallel.replicate` and `Parallel.to_host` hide that difference from the training loop.

Multi-process: values are always *global* arrays assembled from this process's own devices with
`jax.make_array_from_callback`. That matters for pmap, which JAX now implements as
`jit(shard_map)` over a mesh of all devices grouped by process: called directly, pmap converts
host-local arguments to global ones, but its AOT-compiled program (what `compile` returns) has no
such conversion and expects the global arrays (leading axis = all devices) made here.
"""

import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from mnist_jax.core.errors import CheckpointError, ConfigError
from mnist_jax.training.steps import AXIS

MODES = ("pmap", "shard_map")

# XLA:CPU hands some fusions to its YNNPACK library. Which ones is a speed/reproducibility choice
# (config.parallel.cpu_kernels), never a change of the function computed:
# - 'stable': YNNPACK takes every dot and nothing else. XLA's own dot emitter and YNNPACK's
#   reductions split their work by the threads a device gets, and with it the order of float
#   sums, so with them a result would depend on how many (simulated) devices share the cores.
#   With 'stable' a program computes the same bits on 1, 2, 4 or 8 devices and on 1 or 2 cores
#   (tests/test_parallel.py), the premise of the 'tree' reduction.
# - 'fast': XLA's own dots, YNNPACK only for reductions. On the small matrix products of a
#   batch-24 microbatch convnet (configs/speedrun.py) YNNPACK's dots run about 2x slower;
#   batch-128 configs run at the same speed either way (benchmarks/RESULTS.md).
# - 'auto': 'stable' with the 'tree' reduction (which promises the same bits), else 'fast'.
CPU_KERNELS = {
    "stable": {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"},
    "fast": {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_REDUCE"},
}
CPU_KERNEL_CHOICES = ("auto", *CPU_KERNELS)


def resolve_cpu_kernels(cpu_kernels: str, reduction: str) -> str:
    """The XLA:CPU kernels a `parallel.cpu_kernels` setting stands for under `reduction`."""
    if cpu_kernels == "auto":
        return "stable" if reduction == "tree" else "fast"
    return cpu_kernels


class Parallel:
    """The devices of this run and the programs compiled for them."""

    def __init__(self, mode: str, cpu_kernels: str = "stable", shards: int | None = None):
        """`shards`: the 'tree' reduction's fixed shards of every global batch, which evaluation
        uses too (steps.make_eval); None to split batches by the device count."""
        if mode not in MODES:
            raise ConfigError(f"unknown parallel.mode {mode!r}; valid: {', '.join(MODES)}")
        if cpu_kernels not in CPU_KERNELS:
            raise ConfigError(
                f"unknown parallel.cpu_kernels {cpu_kernels!r}; valid: {', '.join(CPU_KERNELS)}"
            )
        self.mode = mode
        self.cpu_kernels = cpu_kernels
        self.shards = shards
        self.num_devices = jax.device_count()
        self.local_devices = jax.local_devices()
        self.mesh = Mesh(np.array(jax.devices()), (AXIS,))
        # pmap's own device order: process by process (jax/_src/pmap.py, _get_mesh_devices).
        by_process = [d for p in range(jax.process_count()) for d in _process_devices(p)]
        self._pmap_mesh = Mesh(np.array(by_process), (AXIS,))

    @classmethod
    def from_config(cls, parallel: Any) -> "Parallel":
        """The devices, kernels and shards of a config's `parallel` section (a run's config.json
        from before a key existed gets that key's default)."""
        reduction = parallel.get("reduction", "mean")
        kernels = resolve_cpu_kernels(parallel.get("cpu_kernels", "stable"), reduction)
        shards = parallel.get("tree_shards", 8) if reduction == "tree" else None
        return cls(parallel.mode, kernels, shards)

    @property
    def platform(self) -> str:
        return self.local_devices[0].platform

    @property
    def device_kind(self) -> str:
        return self.local_devices[0].device_kind

    def check_divisible(self, name: str, value: int) -> None:
        """A global batch must split evenly over all devices; say which sizes would."""
        n = self.num_devices
        if value <= 0 or value % n:
            lower, upper = max(value // n * n, n), (value // n + 1) * n
            raise ConfigError(
                f"{name}={value} cannot be split evenly over {n} devices; use a multiple of {n} "
                f"(e.g. {lower} or {upper})"
            )

    # Moving values between the host and the devices.

    def replicate(self, tree: Any) -> Any:
        """Host values (the same on every process) as one copy per device of every process.

        Each process fills only its own devices, from its own copy of the values.
        """

        def put(x: Any) -> jax.Array:
            x = np.asarray(x)
            if self.mode == "pmap":
                shape, sharding = (self.num_devices, *x.shape), self._pmap_sharding
                return jax.make_array_from_callback(shape, sharding, lambda _: x[None])
            return jax.make_array_from_callback(x.shape, self._replicated, lambda i: x[i])

        return jax.tree.map(put, tree)

    @property
    def _pmap_sharding(self) -> NamedSharding:
        return NamedSharding(self._pmap_mesh, P(AXIS))

    @property
    def _replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, P())

    def to_host(self, tree: Any) -> Any:
        """One replica of replicated device values, as numpy arrays."""
        if self.mode == "pmap":
            return jax.tree.map(lambda x: np.asarray(x.addressable_data(0))[0], tree)
        return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), tree)

    def gather_shards(self, x: jax.Array) -> np.ndarray:
        """A per-device output of every device of every process, stacked in device order."""
        if jax.process_count() > 1:
            x = multihost_utils.process_allgather(x, tiled=True)
        x = np.asarray(x)
        return x.reshape(self.num_devices, -1, *x.shape[1:]) if self.mode == "shard_map" else x

    # Compiling per-device functions.

    def compile(
        self,
        fn: Callable,
        args: tuple,
        *,
        replicated_args: int,
        donate_state: bool = False,
        per_device_outputs: bool | tuple[bool, ...] = (False, False),
    ) -> tuple[Callable, float]:
        """AOT-compile `fn(*args)` for this mode; returns the program and its compile seconds.

        The first `replicated_args` arguments are per-device values (made by `replicate`); the
        rest are small host values (keys, step numbers), the same for every device.
        `per_device_outputs` marks which outputs (one flag for a single output, one per element
        of a tuple) differ per device (read those with
        `gather_shards`, the others with `to_host`). On CPU the program is compiled with the
        YNNPACK choice of `cpu_kernels` (CPU_KERNELS).
        """
        num_rest = len(args) - replicated_args
        start = time.perf_counter()
        if self.mode == "pmap":
            program = jax.pmap(
                fn,
                axis_name=AXIS,
                in_axes=(0,) * replicated_args + (None,) * num_rest,
                donate_argnums=(0,) if donate_state else (),
            )
        else:
            program = jax.jit(
                jax.shard_map(
                    fn,
                    mesh=self.mesh,
                    in_specs=(P(),) * len(args),
                    out_specs=_out_specs(per_device_outputs),
                    # pmap's semantics, which the per-device step is written for. With
                    # check_vma=True, differentiating the replicated (P()) parameters inserts
                    # a psum of the gradients over the axis, so the step's own `lax.pmean`
                    # would leave them num_devices times too large.
                    check_vma=False,
                ),
                donate_argnums=(0,) if donate_state else (),
            )
        options = CPU_KERNELS[self.cpu_kernels] if self.platform == "cpu" else {}
        compiled = program.lower(*args).compile(compiler_options=options)
        return compiled, time.perf_counter() - start


def _out_specs(per_device: bool | tuple[bool, ...]) -> P | tuple[P, ...]:
    if isinstance(per_device, bool):
        return P(AXIS) if per_device else P()
    return tuple(P(AXIS) if d else P() for d in per_device)


def check_same_on_all_processes(value: int, what: str) -> None:
    """Fail on every process if the processes see different values (no-op on one process).

    Guards decisions each process takes from the run directory on its own (resume from which
    epoch, is the run finished): on a filesystem that is not shared they would differ, and the
    processes would then wait for each other forever in different collectives.
    """
    if jax.process_count() == 1:
        return
    values = np.asarray(multihost_utils.process_allgather(np.int64(value))).ravel().tolist()
    if len(set(values)) > 1:
        raise CheckpointError(
            f"the processes see different {what} in the run directory (by process: {values}); "
            "--workdir must be on a filesystem that every process shares (NFS, Lustre, ...)"
        )


def _process_devices(process_index: int) -> list[jax.Device]:
    return [d for d in jax.devices() if d.process_index == process_index]


def barrier(name: str) -> None:
    """Wait until every process gets here (no-op on one process)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)
