"""Process-level setup shared by the binaries: the multi-host runtime and one-line user errors.

A run on several processes (hosts, or processes on one host) uses JAX's multi-controller runtime:
every process runs the same program, and `jax.distributed.initialize` connects them through a
coordinator (process 0). `initialize()` decides whether to call it:

  explicit   --coordinator_address, --num_processes, --process_id (or the environment variables
             MNIST_JAX_COORDINATOR, MNIST_JAX_NUM_PROCESSES, MNIST_JAX_PROCESS_ID) are all set;
  SLURM      inside an `srun` step of more than one task (SLURM_NTASKS > 1): JAX reads the rest;
  TPU pod    --distributed=on (what `launch.sh tpu` passes): JAX asks the TPU metadata server;
  otherwise  a plain single-process run, which never touches jax.distributed.

Failures: the coordinator expects a heartbeat from every process; a process that stops sending
them (killed, crashed, its host gone) is declared dead after --heartbeat_timeout seconds and the
runtime then terminates every other process with "Terminating process because the JAX
distributed service detected fatal errors", instead of leaving them blocked in a collective.
"""

import contextlib
import os
import traceback
from collections.abc import Iterator
from pathlib import Path

import jax
from absl import flags, logging

from mnist_jax.core import logs
from mnist_jax.core.cli import exit_with
from mnist_jax.core.errors import ConfigError, UserError

DISTRIBUTED_MODES = ("auto", "on", "off")


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(name) or default


def _env_int(name: str, default: int | None = None) -> int | None:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"${name}={value!r} is not an integer") from None


_DISTRIBUTED = flags.DEFINE_enum(
    "distributed",
    _env("MNIST_JAX_DISTRIBUTED", "auto"),
    DISTRIBUTED_MODES,
    "Multi-process runtime (jax.distributed). auto: on when --coordinator_address/"
    "--num_processes/--process_id are set or inside a multi-task SLURM step; on: always "
    "(TPU pods: JAX detects the rest); off: never. Env: MNIST_JAX_DISTRIBUTED.",
)
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address",
    _env("MNIST_JAX_COORDINATOR"),
    "host:port of process 0, reachable from every process (any free port). "
    "Env: MNIST_JAX_COORDINATOR.",
)
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes",
    _env_int("MNIST_JAX_NUM_PROCESSES"),
    "Number of processes in the run. Env: MNIST_JAX_NUM_PROCESSES.",
)
_PROCESS_ID = flags.DEFINE_integer(
    "process_id",
    _env_int("MNIST_JAX_PROCESS_ID"),
    "This process's index, 0 .. num_processes-1; 0 coordinates and writes the run directory. "
    "Env: MNIST_JAX_PROCESS_ID.",
)
_HEARTBEAT_TIMEOUT = flags.DEFINE_integer(
    "heartbeat_timeout",
    _env_int("MNIST_JAX_HEARTBEAT_TIMEOUT", 60),
    "Seconds without a heartbeat after which a process counts as dead and every other process "
    "is terminated with an error. Env: MNIST_JAX_HEARTBEAT_TIMEOUT.",
)
_INIT_TIMEOUT = flags.DEFINE_integer(
    "init_timeout",
    _env_int("MNIST_JAX_INIT_TIMEOUT", 300),
    "Seconds every process waits for all the others to connect at start-up. "
    "Env: MNIST_JAX_INIT_TIMEOUT.",
)


_COMPILATION_CACHE = flags.DEFINE_string(
    "compilation_cache",
    _env("MNIST_JAX_COMPILATION_CACHE", str(Path("~/.cache/mnist_jax/xla").expanduser())),
    "Directory of JAX's persistent compilation cache: a program compiled once (e.g. by the "
    "first seed of a comparison) is loaded, not recompiled, by later processes. '' = off. "
    "Env: MNIST_JAX_COMPILATION_CACHE.",
)


def enable_compilation_cache(directory: str) -> None:
    """Keep compiled programs on disk across processes, the smallest too: a process loads the
    few dozen small programs it runs eagerly (seeding, data set-up) in less time than it takes
    to compile them (about 0.5 s of a training run's start-up, measured on a 2-core VM)."""
    if directory:
        jax.config.update("jax_compilation_cache_dir", directory)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def _in_slurm_step() -> bool:
    """Inside `srun` with several tasks: JAX's SLURM detection has everything it needs."""
    needed = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_PROCID", "SLURM_LOCALID")
    return all(v in os.environ for v in needed) and _env_int("SLURM_NTASKS", 1) > 1


def distributed_settings() -> dict | None:
    """The arguments of `jax.distributed.initialize` for this process, or None: single process."""
    explicit = {
        "coordinator_address": _COORDINATOR.value,
        "num_processes": _NUM_PROCESSES.value,
        "process_id": _PROCESS_ID.value,
    }
    given = {k: v for k, v in explicit.items() if v is not None}
    mode = _DISTRIBUTED.value
    if mode == "off":
        return None
    if given and len(given) < 3 and mode == "auto":
        missing = sorted(k for k in explicit if k not in given)
        raise ConfigError(
            f"multi-process settings are incomplete: {', '.join(sorted(given))} given but "
            f"{', '.join(missing)} missing; set all three (flags or MNIST_JAX_* variables), "
            "or none for a single process"
        )
    n, pid = given.get("num_processes"), given.get("process_id")
    if n is not None and n < 1:
        raise ConfigError(f"--num_processes must be >= 1, got {n}")
    if pid is not None and n is not None and not 0 <= pid < n:
        raise ConfigError(f"--process_id must be in 0..{n - 1}, got {pid}")
    if mode == "auto" and not given and not _in_slurm_step():
        return None
    if _HEARTBEAT_TIMEOUT.value < 1 or _INIT_TIMEOUT.value < 1:
        raise ConfigError("--heartbeat_timeout and --init_timeout must be >= 1 second")
    return given | {
        "initialization_timeout": _INIT_TIMEOUT.value,
        "heartbeat_timeout_seconds": _HEARTBEAT_TIMEOUT.value,
        "shutdown_timeout_seconds": max(_HEARTBEAT_TIMEOUT.value, 30),
    }


def initialize() -> None:
    """Connect the processes of a multi-process run (if this is one) and set up logging.

    Must run before anything touches a device. Processes other than 0 log warnings and errors
    only, so the console of a multi-process launch reads like that of a single process.
    """
    logging.get_absl_handler().addFilter(logs.quiet_libraries)
    enable_compilation_cache(_COMPILATION_CACHE.value)
    settings = distributed_settings()
    if settings is not None:
        shown = {k: v for k, v in settings.items() if k != "initialization_timeout"}
        logging.info("Connecting to the other processes (jax.distributed): %s", shown or "auto")
        jax.distributed.initialize(**settings)
        if jax.devices()[0].platform == "cpu":
            logs.filter_stdout(logs.healthy_gloo_summary)  # gloo's "[Gloo] Rank i is connected"
        if jax.process_index() != 0:
            logging.set_verbosity(logging.WARNING)
    logging.info(
        "JAX %s: process %d of %d, %d local / %d global devices (%s)",
        jax.__version__,
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
        jax.devices()[0].device_kind,
    )


@contextlib.contextmanager
def user_errors_exit() -> Iterator[None]:
    """Turn errors into a one-line message on stderr and exit status 1.

    A UserError needs no traceback. In a multi-process run any error also ends this process at
    once, without the orderly jax.distributed shutdown: that shutdown waits at a barrier for
    every other process, and those are typically blocked in a collective waiting for this one.
    Leaving abruptly makes their collectives fail (connection reset) or their heartbeats time
    out, so every process stops within --heartbeat_timeout seconds.
    """
    try:
        yield
    except UserError as e:
        exit_with(f"error: {_who()}{e}")
    except Exception as e:
        if not jax.distributed.is_initialized():
            raise
        traceback.print_exc()
        first = (str(e).strip().splitlines() or [""])[0][:400]
        exit_with(
            f"error: {_who()}{type(e).__name__}: {first}\n"
            "error: in a multi-process run this usually means another process died or failed "
            "first (see its log); exiting without waiting for the others"
        )


def _who() -> str:
    return f"process {jax.process_index()}: " if jax.distributed.is_initialized() else ""
