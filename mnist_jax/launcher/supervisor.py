"""Runs the processes of a launch and waits for all of them; signals reach every one.

`run` starts every command at once (the processes of one multi-process run); `run_pool` runs a
queue of independent commands a few at a time (the seeds of a comparison). Each child gets a
session of its own, so a Ctrl-C in the terminal or a SIGTERM from a scheduler
(preemption) reaches the launcher alone, which passes it on once to every child; a second
signal kills them. A launcher killed outright (kill -9) takes its children with it
(core/lifeline.py). The exit status is that of the first process to fail, so a preempted
launch reports what its processes did.
"""

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from absl import logging

from mnist_jax.core import lifeline
from mnist_jax.core.errors import UserError
from mnist_jax.launcher.commands import Command

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
TAIL_LINES = 5  # lines of a failed process's log shown on the console
KILL_AFTER_SECONDS = 10.0  # after a SIGTERM sent by the supervisor itself


def exit_status(returncode: int) -> int:
    """A Popen return code as a shell reports it: 128 + N for a process killed by signal N."""
    return 128 - returncode if returncode < 0 else returncode


def tail(path: Path, lines: int = TAIL_LINES) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return []


def run(
    commands: Sequence[Command], *, grace_seconds: float | None = None, poll_seconds: float = 0.1
) -> int:
    """Starts every command, waits for all of them; returns the first failure's exit status.

    0 if every process succeeded; 128 + N if none failed but the launcher got signal N. With
    `grace_seconds`, processes still running that long after the first failure are terminated
    (in a multi-process run the others should stop by themselves within the heartbeat timeout).
    """
    with contextlib.ExitStack() as stack:
        procs: list[subprocess.Popen] = []
        received = _forward_signals(stack, lambda: procs)
        for command in commands:
            procs.append(_start(command, stack))
        return _wait(commands, procs, received, grace_seconds, poll_seconds)


def run_pool(
    commands: Sequence[Command], jobs: int, *, report_seconds: float = 15.0,
    poll_seconds: float = 0.2,
) -> int:  # fmt: skip
    """Runs `commands` in order, at most `jobs` at a time; returns the first failure's status.

    After a failure, or a signal (passed on to the running processes; a second one kills
    them), nothing new starts and the running commands are waited for. Every `report_seconds`
    the last line of each running command's log (its progress: steps/s, ETA) is logged here.
    """
    if jobs < 1:
        raise UserError(f"--jobs must be >= 1, got {jobs}")
    with contextlib.ExitStack() as stack:
        queue = list(enumerate(commands))
        running: dict[int, subprocess.Popen] = {}
        first_failure: int | None = None
        received = _forward_signals(stack, lambda: list(running.values()))
        next_report = time.monotonic() + report_seconds
        while running or (queue and first_failure is None and not received):
            while queue and len(running) < jobs and first_failure is None and not received:
                i, command = queue.pop(0)
                logging.info("started %s", _name(command, i))
                running[i] = _start(command, stack, append=True)
            for i, p in list(running.items()):
                if p.poll() is None:
                    continue
                del running[i]
                if p.returncode == 0:
                    logging.info("finished %s", _name(commands[i], i))
                    continue
                _report(commands[i], p.returncode)
                if first_failure is None:
                    first_failure, status = i, exit_status(p.returncode)
            if time.monotonic() > next_report:
                next_report += report_seconds
                for i in running:
                    last = tail(commands[i].log, 1) if commands[i].log else []
                    if last:
                        logging.info("[%s] %s", _name(commands[i], i), last[0].split("] ")[-1])
            time.sleep(poll_seconds)
    if first_failure is not None:
        return status
    return 128 + received[0] if received else 0


def _forward_signals(
    stack: contextlib.ExitStack, live: Callable[[], list[subprocess.Popen]]
) -> list[int]:
    """Passes FORWARDED signals on to the `live()` processes (a second one: SIGKILL) until the
    stack closes, which also kills them if it closes by an exception; returns the signals got."""
    received: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        received.append(signum)
        sig = signum if len(received) == 1 else signal.SIGKILL
        procs = live()
        logging.warning(
            "got %s: sending %s to %d process(es)", signal.Signals(signum).name,
            signal.Signals(sig).name, sum(p.returncode is None for p in procs),
        )  # fmt: skip
        _signal_all(procs, sig)

    previous = {s: signal.signal(s, forward) for s in FORWARDED}
    stack.callback(lambda: [signal.signal(s, h) for s, h in previous.items()])
    stack.callback(lambda: _kill_all(live()))  # only if we leave by an exception
    return received


def _start(command: Command, stack: contextlib.ExitStack, append: bool = False) -> subprocess.Popen:
    """Starts `command` in a session of its own; `append`: a rerun adds to its log."""
    output = None
    if command.log is not None:
        command.log.parent.mkdir(parents=True, exist_ok=True)
        log = open(command.log, "a" if append else "w")  # noqa: SIM115 (the stack closes it)
        output = stack.enter_context(log)
    try:
        return subprocess.Popen(
            command.argv,
            env={**os.environ, **command.env, lifeline.PARENT_ENV: str(os.getpid())},
            stdout=output,
            stderr=subprocess.STDOUT if output else None,
            start_new_session=True,
        )
    except OSError as e:
        raise UserError(f"cannot start {command.argv[0]}: {e.strerror or e}") from None


def _wait(commands, procs, received, grace_seconds, poll_seconds) -> int:
    statuses: dict[int, int] = {}
    first_failure: int | None = None
    terminate_at = kill_at = None
    while len(statuses) < len(procs):
        for i, p in enumerate(procs):
            if i in statuses or p.poll() is None:
                continue
            statuses[i] = exit_status(p.returncode)
            # A lone command on the terminal that exits 1 has said why in its own one line.
            alone = len(procs) == 1 and commands[i].log is None and p.returncode == 1
            if statuses[i] != 0:
                if not alone:
                    _report(commands[i], p.returncode)
                if first_failure is None:
                    first_failure = i
                    if grace_seconds is not None:
                        terminate_at = time.monotonic() + grace_seconds
        now = time.monotonic()
        if terminate_at is not None and now > terminate_at:
            running = [i for i, p in enumerate(procs) if p.returncode is None]
            logging.error(
                "%s still running %.0f s after %s failed; terminating",
                ", ".join(_name(commands[i], i) for i in running), grace_seconds,
                _name(commands[first_failure], first_failure),
            )  # fmt: skip
            _signal_all(procs, signal.SIGTERM)
            terminate_at, kill_at = None, now + KILL_AFTER_SECONDS
        if kill_at is not None and now > kill_at:
            _signal_all(procs, signal.SIGKILL)
            kill_at = None
        time.sleep(poll_seconds)
    if first_failure is not None:
        return statuses[first_failure]
    return 128 + received[0] if received else 0


def _name(command: Command, index: int) -> str:
    return command.label or f"process {index}"


def _report(command: Command, returncode: int) -> None:
    how = (
        f"was killed by {signal.Signals(-returncode).name}"
        if returncode < 0
        else f"exited with status {returncode}"
    )
    logging.error("%s %s", command.label or " ".join(command.argv[:4]), how)
    if command.log is not None:
        for line in tail(command.log):
            logging.error("  [%s] %s", command.label or command.log.name, line)


def _signal_all(procs: Sequence[subprocess.Popen], sig: int) -> None:
    for p in procs:
        if p.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(sig)


def _kill_all(procs: Sequence[subprocess.Popen]) -> None:
    """Leaves no child behind when the supervisor itself fails."""
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
