"""Errors a user can fix. The binaries print these as one line and exit non-zero."""


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
