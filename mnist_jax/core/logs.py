"""Log lines from Python as well as from the binaries, and a heartbeat for long silent calls.

The package logs through absl. Inside a binary (`absl.app.run`), absl's flags (--verbosity,
--logtostderr, ...) decide what is shown. Called from Python, absl logs at WARNING, so a
`train_and_evaluate` of several minutes would print nothing; the public entry points (the
functions of mnist_jax.api, `train_and_evaluate`, `evaluation.runner.evaluate`) therefore call
`default_to_info()`, which shows INFO lines on stderr unless the caller has chosen a level with
`log_to_stderr(level)` (e.g. `mnist_jax.log_to_stderr("warning")` to keep them quiet). The lines
go to a stderr handler in absl's format on the root logger; a program that has set up Python
logging itself (a handler on the root logger) keeps its handlers, and only the level changes.

`heartbeat(what)` wraps a call that can run for a long time without logging (XLA compilation,
an evaluation pass, plotting): every few seconds it logs that the call is still running, so a
console never stays silent for more than `every` seconds while work goes on.
"""

import atexit
import contextlib
import logging as pylogging
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator

from absl import flags, logging

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}  # fmt: skip
_handler: pylogging.Handler | None = None
_chosen = False  # the caller picked a level with log_to_stderr: defaults leave it alone


def quiet_libraries(record: pylogging.LogRecord) -> bool:
    """Orbax (and JAX) log every file they write at INFO; keep their warnings, drop the chatter."""
    return record.levelno >= pylogging.WARNING or not any(
        part in record.pathname for part in ("/orbax/", "/jax/_src/")
    )


def log_to_stderr(level: str = "info") -> None:
    """Shows mnist_jax's log lines of `level` and above ('debug', 'info', 'warning', 'error') on
    stderr, in absl's format. Inside an absl binary only the verbosity changes."""
    global _chosen
    if level not in _LEVELS:
        raise ValueError(f"log level {level!r}; valid: {', '.join(_LEVELS)}")
    _chosen = True
    _set(level)


def default_to_info() -> None:
    """INFO lines on stderr for a caller that has not chosen a level (see the module doc)."""
    if not _chosen and not flags.FLAGS.is_parsed():
        _set("info")


def _set(level: str) -> None:
    global _handler
    logging.set_verbosity(_LEVELS[level])
    if flags.FLAGS.is_parsed() or _handler is not None:  # a binary: absl's handler and flags
        return
    root = pylogging.getLogger()
    implicit = [h for h in root.handlers if _is_basic_config(h)]
    if len(implicit) < len(root.handlers):
        return  # the program set up logging itself (or pytest does): its handlers show the lines
    for handler in implicit:  # absl's fallback `logging.basicConfig()`: replaced, not doubled
        root.removeHandler(handler)
    _handler = pylogging.StreamHandler(sys.stderr)
    _handler.setFormatter(logging.PythonFormatter())
    _handler.addFilter(quiet_libraries)
    root.addHandler(_handler)


def _is_basic_config(handler: pylogging.Handler) -> bool:
    """The handler `logging.basicConfig()` adds, which absl calls when nothing is set up."""
    formatter = handler.formatter
    return (
        type(handler) is pylogging.StreamHandler
        and handler.stream is sys.stderr
        and formatter is not None
        and formatter._fmt == pylogging.BASIC_FORMAT
    )


# The heartbeat: one monitor thread watches the time of the last log line; while a `heartbeat`
# block runs and nothing has been logged for its `every` seconds, it logs that the block is
# still running. Silent calls in a row thus never add up to a long silence.
_last_line = time.monotonic()
_running: list[tuple[str, float, float]] = []  # (what, start, every), innermost last
_monitor: threading.Thread | None = None
POLL_SECONDS = 0.25


def _note_line(record: pylogging.LogRecord) -> bool:
    global _last_line
    if quiet_libraries(record):  # a line that is shown
        _last_line = time.monotonic()
    return True


logging.get_absl_logger().addFilter(_note_line)


def _watch() -> None:
    while True:
        time.sleep(POLL_SECONDS)
        try:
            what, start, every = _running[-1]
        except IndexError:  # nothing running
            continue
        now = time.monotonic()
        if now - _last_line >= every:
            logging.info("%s: running for %.0f s", what, now - start)


@contextlib.contextmanager
def heartbeat(what: str, every: float = 5.0, done: bool = False) -> Iterator[None]:
    """While the block runs, logs '<what>: running for N s' whenever no line has been logged
    for `every` seconds; with `done`, also '<what>: X.X s' at the end."""
    global _monitor
    if _monitor is None:
        _monitor = threading.Thread(target=_watch, name="heartbeat", daemon=True)
        _monitor.start()
    entry = (what, time.monotonic(), every)
    _running.append(entry)
    try:
        yield
    finally:
        _running.remove(entry)
    if done:
        logging.info("%s: %.1f s", what, time.monotonic() - entry[1])


# Gloo (JAX's CPU collectives across processes) prints this to stdout once per process when it
# connects, from C++ and unconditionally. It is dropped only when every peer is connected; any
# other count is a real problem and stays.
_GLOO_SUMMARY = re.compile(
    r"\[Gloo\] Rank \d+ is connected to (\d+) peer ranks\. "
    r"Expected number of connected peer ranks is : (\d+)"
)
_stdout: tuple[int, threading.Thread] | None = None


def healthy_gloo_summary(line: str) -> bool:
    match = _GLOO_SUMMARY.fullmatch(line.strip())
    return match is not None and match.group(1) == match.group(2)


def filter_stdout(drop: Callable[[str], bool] = healthy_gloo_summary) -> None:
    """Routes file descriptor 1 (Python's and C++'s stdout alike) through a pipe whose lines a
    thread copies to the real stdout, except those for which `drop(line)` is true. Undone by
    `restore_stdout`, which runs at exit."""
    global _stdout
    if _stdout is not None:
        return
    sys.stdout.flush()
    real = os.dup(1)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 1)
    os.close(write_end)

    def pump() -> None:
        pending = b""
        while chunk := os.read(read_end, 65536):
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                if not drop(line.decode(errors="replace")):
                    os.write(real, line + b"\n")
        if pending:
            os.write(real, pending)
        os.close(read_end)

    thread = threading.Thread(target=pump, name="stdout-filter", daemon=True)
    thread.start()
    _stdout = (real, thread)
    atexit.register(restore_stdout)


def restore_stdout() -> None:
    """Points stdout back at the terminal (or file) and forwards what the pipe still holds."""
    global _stdout
    if _stdout is None:
        return
    real, thread = _stdout
    _stdout = None
    sys.stdout.flush()
    os.dup2(real, 1)  # closes the pipe's last write end: the thread sees the end of it
    thread.join(timeout=5)
