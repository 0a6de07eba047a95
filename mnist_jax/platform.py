"""Process-level setup shared by the binaries: the multi-host runtime and one-line user errors."""

import contextlib
import logging as pylogging
import sys
from collections.abc import Iterator

import jax
from absl import logging

from mnist_jax.errors import UserError


def _quiet_libraries(record: pylogging.LogRecord) -> bool:
    """Orbax logs every file it writes at INFO; keep its warnings, drop the chatter."""
    return record.levelno >= pylogging.WARNING or not any(
        part in record.pathname for part in ("/orbax/", "/jax/_src/")
    )


def initialize() -> None:
    """Log what this process runs on. (Multi-host setup is added with jax.distributed.)"""
    logging.get_absl_handler().addFilter(_quiet_libraries)
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
    """Turn a UserError into a one-line message on stderr and exit status 1: no traceback."""
    try:
        yield
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
