"""A test hook: stop or pause a training process at a named point of the loop.

The fault-injection tests (tests/test_faults.py) must kill a run at moments that polling files
from outside cannot hit on a run whose chunks take milliseconds: while a chunk computes, while
Orbax writes a checkpoint in the background. The loop calls `point(name)` at those moments; the
environment variable

    MNIST_JAX_TEST_FAULT=<action>@<point>:<n>

makes the n-th pass (1-based, counted per process) through `point` act:

    kill          SIGKILL this process (what a crash, an OOM kill or `kill -9` does)
    pause=<s>     log 'test hook: pid P paused at <point>:<n>' and sleep s seconds, so that a
                  test can send a real signal (or a kill) from outside at that moment; a
                  SIGTERM or SIGINT ends the pause (and reaches the loop's handler)

Points of the training loop (train.py): `chunk` (a chunk has been dispatched to the devices
and is computing; when the hook acts, a checkpoint still being written has committed first, so
that the moment is the same on every run), `metrics` (an epoch's metrics line is written, its
checkpoint not yet started), `checkpoint_writing` (Orbax is writing a checkpoint in the
background), `checkpoint_done` (that checkpoint is committed), `summary` (summary.json is
written). Of an evaluation (evaluation/outputs.py): `comparison_staged` (a complete
comparison is written in its staging directory), `comparison_file_published` (one of its files
has been moved into the output directory).

Unset, as everywhere outside the tests, a point costs one dictionary lookup.
"""

import os
import signal
import time
from collections.abc import Callable

from absl import logging

ENV = "MNIST_JAX_TEST_FAULT"
_passes: dict[str, int] = {}


def point(name: str, before: Callable[[], object] | None = None) -> None:
    """Count a pass through `name`; act if MNIST_JAX_TEST_FAULT names this pass.

    `before` runs first, only when the hook acts (e.g. wait for a checkpoint to commit).
    """
    spec = os.environ.get(ENV)
    if not spec:
        return
    action, _, where = spec.partition("@")
    target, _, n = where.partition(":")
    if target != name:
        return
    _passes[name] = _passes.get(name, 0) + 1
    if _passes[name] != int(n or 1):
        return
    if before is not None:
        before()
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action.startswith("pause="):
        logging.warning("test hook: pid %d paused at %s:%s", os.getpid(), name, n or 1)
        logging.flush()
        _pause(float(action.removeprefix("pause=")))
    else:
        raise ValueError(f"{ENV}={spec!r}: unknown action {action!r} (kill, pause=SECONDS)")


def _pause(seconds: float) -> None:
    """Sleep `seconds`, or until SIGTERM/SIGINT arrives (passed on to the loop's handler)."""
    received = []
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}

    def handle(signum: int, frame: object) -> None:
        received.append(signum)
        handler = previous[signum]
        if callable(handler):
            handler(signum, frame)
        elif handler == signal.SIG_DFL:
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)

    for s in previous:
        signal.signal(s, handle)
    try:
        deadline = time.monotonic() + seconds
        while not received and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
