"""What produced a result: package versions, devices, processes, host, CPU, code revision, time.

Recorded next to every result (summary.json, comparison.json, benchmark.json).
"""

import contextlib
import datetime
import os
import platform
import socket
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import jax
import numpy as np

PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "ml-collections")


def _git_commit() -> str | None:
    """The commit of the checkout this package runs from; None for an installed package (a
    wheel in a venv that happens to lie inside some repository names no commit of its own)."""
    package = Path(__file__).resolve().parents[1]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--show-toplevel", "HEAD"],
            cwd=package,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.stdout.split()
    if out.returncode != 0 or len(lines) != 2 or Path(lines[0]).resolve() != package.parent:
        return None
    return lines[1]


def _cpuinfo() -> tuple[str, set[str]]:
    """The CPU's marketing name (speeds depend on it) and its feature flags, from one read of
    /proc/cpuinfo on Linux; elsewhere the architecture and no flags."""
    model, flags = "", set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not model:
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    return model or platform.processor() or platform.machine(), flags


# Instruction-set extensions that change which kernels XLA:CPU and its libraries run, and so the
# last bits of float results across machine kinds (docs/determinism.md).
_ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile")


def cpu_kind() -> dict[str, Any]:
    """The CPU as far as results depend on it: model, the extensions it has, and the ISA that
    XLA's generated code is limited to (`--xla_cpu_max_isa` in XLA_FLAGS; None: the CPU's own).

    Results are the same bits on the same kind (model and extensions); across kinds the last
    bits, and so trained models, differ.
    """
    model, flags = _cpuinfo()
    max_isa = None
    for flag in os.environ.get("XLA_FLAGS", "").split():
        if flag.startswith("--xla_cpu_max_isa="):
            max_isa = flag.split("=", 1)[1]
    return {
        "model": model,
        "avx512": "avx512f" in flags,
        "extensions": [f for f in _ISA_FLAGS if f in flags],
        "xla_max_isa": max_isa,
        "cores": os.cpu_count(),
    }


def sgemm_gflops(n: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of numpy's float32 n x n x n matrix product, best of `repeats` (~0.3 s at 2048 on
    a 2-core CPU): one number that places a machine's speed beside its results."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n), np.float32), rng.standard_normal((n, n), np.float32)
    a @ b  # warm-up: thread pool, page faults
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def describe_cpu(kind: dict[str, Any], gflops: float | None = None) -> str:
    """One line naming a CPU kind, e.g. 'Intel Xeon (2 cores, AVX-512; 320 GFLOP/s sgemm)'."""
    isa = "AVX-512" if kind["avx512"] else "AVX2" if "avx2" in kind["extensions"] else "no AVX2"
    if kind.get("xla_max_isa"):
        isa += f", XLA code limited to {kind['xla_max_isa']}"
    speed = "" if gflops is None else f"; {gflops:.0f} GFLOP/s sgemm"
    return f"{kind['model']} ({kind['cores']} cores, {isa}{speed})"


def collect() -> dict[str, Any]:
    """What produced a result: versions, devices, processes, host, code revision, time."""
    from mnist_jax import __version__

    versions = {"mnist_jax": __version__, "python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    devices = jax.devices()
    cpu = cpu_kind()
    return {
        "versions": versions,
        "platform": devices[0].platform,
        "device_kind": devices[0].device_kind,
        "num_devices": len(devices),
        "num_processes": jax.process_count(),
        "hostname": socket.gethostname(),
        "cpu_model": cpu["model"],  # also in "cpu"; kept for readers of earlier results
        "cpu_count": os.cpu_count(),
        "cpu": cpu,
        "git_commit": _git_commit(),
        "command": " ".join(sys.argv),
        "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
