"""A launcher's children die with it: processes started by the launcher's supervisor
(launcher/supervisor.py) ask the kernel for SIGKILL when their parent dies."""

import os
import sys

PARENT_ENV = "MNIST_JAX_PARENT_PID"  # set by the launcher's supervisor for its children
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent() -> None:
    """A child of a launcher (its pid in MNIST_JAX_PARENT_PID) dies when the launcher dies.

    The children run in sessions of their own, so a kill -9 of the launcher (or of its process
    group) used to leave them training, holding their run directories' locks against the rerun.
    The kernel now sends them SIGKILL (Linux's PR_SET_PDEATHSIG; elsewhere nothing changes):
    a killed run resumes from its last checkpoint, bit for bit, and the lock dies with it.
    """
    parent = os.environ.pop(PARENT_ENV, None)  # this process's own children get their own
    if parent is None or not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != int(parent):  # the launcher died before the line above
        os.kill(os.getpid(), signal.SIGKILL)
