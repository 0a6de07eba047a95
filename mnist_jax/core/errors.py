"""Errors a user can fix. The binaries print these as one line and exit non-zero."""

import contextlib
import errno
import os
from collections.abc import Iterator

# A full, read-only or quota-bound disk: the machine's state, not a bug; one line, exit 1.
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG})


class UserError(Exception):
    """Bad input: the message names the bad value and what would be valid."""


class ConfigError(UserError, ValueError):
    """A config value that cannot work (unknown name, impossible size, bad combination)."""


class DataError(UserError):
    """Missing, corrupt or unprepared data."""


class CheckpointError(UserError):
    """Missing, corrupt or mismatched checkpoints and run directories."""


class WorkdirBusyError(CheckpointError):
    """Another live process holds the run directory's lock (it is training there)."""


@contextlib.contextmanager
def writing_into(where: str | os.PathLike) -> Iterator[None]:
    """Writes under `where`: a full or read-only disk is a UserError naming it (one line)."""
    try:
        yield
    except OSError as e:
        if e.errno not in DISK_ERRNOS:
            raise
        raise UserError(f"cannot write into {where}: {e.strerror}; free space or choose "
                        "another directory, and run the command again") from None  # fmt: skip
