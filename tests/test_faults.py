"""Fault injection: what a run survives, and how every bad input fails (README.md, "Guarantees").

Every fault is applied to the real binaries (`python -m mnist_jax.main`, `.evaluate`, `.sweep`)
on a tiny real run: an MLP with one hidden layer of 32 units on 2% of the training split, 2
epochs of 8 steps, each epoch 4 compiled chunks of 2 steps. One uninterrupted run per module is
the reference; an interrupted run, once rerun, must equal it bit for bit: the final parameters
and optimizer state (every array of the last checkpoint), its loop state, every metrics line and
the summary, apart from timings and provenance.

Moments that polling cannot hit on a run this small (a chunk computing, Orbax writing a
checkpoint in the background) are reached with the MNIST_JAX_TEST_FAULT hook
(mnist_jax/training/faults.py), which kills the process or pauses it there. The binaries run as
forks of one process that has already imported the libraries (tests/forkserver.py), with a
persistent XLA compilation cache: about eighty runs of them took 153 s on a 2-core machine
shared with other jobs (load average 9): 0.2-1 s per bad input, 4-8 s per run interrupted and
resumed. Marked slow: the kill matrix, the signals, the lock and the later divergence (4-12 s
each) and the two-process stop (about 55 s).
"""

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT
from forkserver import Child, ForkServer

from mnist_jax.core.errors import WorkdirBusyError
from mnist_jax.training import faults, rundir
from mnist_jax.training.loop_state import BestTracker
from tests import events

# One worker runs this module (--dist loadgroup), and its trained runs are session fixtures, so
# they are built once even when tests of other modules run in between (docs/testing.md).
pytestmark = pytest.mark.xdist_group("faults")
BASE = (
    "--config=configs/mlp.py",
    "--config.mlp.hidden_sizes=32,",
    "--config.data.train_fraction=0.02",  # 1,081 images: 8 steps of 128 per epoch
    "--config.num_epochs=2",
    "--config.steps_per_chunk=2",  # 4 chunks per epoch
)
STEPS_PER_EPOCH = 8
ABSL_LINE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+ \S+:\d+\] ")
TIMING_METRICS = {"epoch_seconds", "train_samples_per_second", "elapsed_seconds"}
TIMING_SUMMARY = {"train_seconds", "compile_seconds"}
PROVENANCE = {
    "versions", "platform", "device_kind", "num_devices", "num_processes", "hostname",
    "cpu_model", "cpu_count", "cpu", "git_commit", "command", "time",
}  # fmt: skip


# --- Running the binaries ----------------------------------------------------------------------


@dataclasses.dataclass
class Result:
    status: int
    stdout: str
    stderr: str

    def lines(self) -> list[str]:
        """stderr without absl's log records: what the program says to the user."""
        return [x for x in self.stderr.splitlines() if x.strip() and not ABSL_LINE.match(x)]


class Binaries:
    def __init__(self, server: ForkServer, logs: Path):
        self.server, self.logs = server, logs

    def start(self, module: str, *args: str, fault: str = "", env: dict | None = None) -> Child:
        env = dict(env or {}, **{faults.ENV: fault})
        return self.server.start(module, list(args), self.logs, env)

    def run(self, module: str, *args: str, fault: str = "", env: dict | None = None) -> Result:
        child = self.start(module, *args, fault=fault, env=env)
        return self.finish(child)

    def finish(self, child: Child) -> Result:
        status = self.server.wait(child)
        return Result(status, child.stdout, child.stderr)

    def train(self, workdir: Path, *args: str, fault: str = "") -> Result:
        return self.run("mnist_jax.main", *BASE, f"--workdir={workdir}", *args, fault=fault)

    def start_train(self, workdir: Path, *args: str, fault: str = "") -> Child:
        return self.start("mnist_jax.main", *BASE, f"--workdir={workdir}", *args, fault=fault)


@pytest.fixture(scope="session")
def bins(mnist_dir, tmp_path_factory):
    env = {k: v for k, v in os.environ.items() if k != faults.ENV}
    env |= {
        "PYTHONPATH": str(ROOT),
        "MNIST_DIR": mnist_dir,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=1",
        "JAX_COMPILATION_CACHE_DIR": str(tmp_path_factory.mktemp("xla_cache")),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }
    with ForkServer(env) as server:
        yield Binaries(server, tmp_path_factory.mktemp("logs"))


def assert_one_line(result: Result, status: int, prefix: str, *needles: str) -> str:
    """Exit `status`, no traceback, and exactly one line for the user (besides log records)."""
    assert result.status == status, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = result.lines()
    assert len(lines) == 1 and lines[0].startswith(prefix), result.stderr[-3000:]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def assert_user_error(result: Result, *needles: str) -> str:
    """A user error: status 1, one `error:` line naming the bad value or file, no warnings."""
    line = assert_one_line(result, 1, "error: ", *needles)
    print("\nLINE", line)
    assert not re.search(r"^[WEF]\d{4} ", result.stderr, re.M), result.stderr[-3000:]
    return line


# --- What a run directory holds ----------------------------------------------------------------


def snapshot(path: Path) -> dict[str, str] | None:
    """sha256 of every file under `path` (None if it does not exist), but Python's bytecode
    cache: a config file given by path is imported, which may write its __pycache__ beside it."""
    if not path.exists():
        return None
    if path.is_file():
        return {".": hashlib.sha256(path.read_bytes()).hexdigest()}
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def committed_steps(workdir: Path) -> list[int]:
    directory = workdir / "checkpoints"
    if not directory.is_dir():
        return []
    return sorted(
        int(p.name) for p in directory.iterdir()
        if p.name.isdigit() and (p / "commit_success.txt").exists()
    )  # fmt: skip


def epochs_logged(workdir: Path) -> list[int]:
    path = workdir / "metrics.jsonl"
    if not path.exists():
        return []
    return [rundir.strict_loads(line)["epoch"] for line in path.read_text().splitlines()]


def checkpoint_arrays(directory: Path) -> dict[str, np.ndarray]:
    """Every array of a checkpoint's `state` (params, optimizer state, step) and `best` items."""
    import jax
    import orbax.checkpoint as ocp

    arrays = {}
    with ocp.StandardCheckpointer() as checkpointer:
        for item in ("state", "best"):
            tree = checkpointer.restore(directory / item)
            for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
                arrays[item + jax.tree_util.keystr(path)] = np.asarray(leaf)
    return arrays


def outcome(workdir: Path) -> dict:
    """What a finished run produced, without timings and provenance; every JSON read strictly."""
    summary = rundir.strict_loads((workdir / "summary.json").read_text())
    metrics = [rundir.strict_loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    steps = committed_steps(workdir)
    meta = rundir.strict_loads((workdir / "checkpoints" / str(steps[-1]) / "meta" / "metadata")
                               .read_text())  # fmt: skip
    loop = meta["loop"]
    loop.pop("train_seconds")
    loop["partial"].pop("seconds", None)
    loop["history"] = [{k: v for k, v in r.items() if k not in TIMING_METRICS}
                       for r in loop["history"]]  # fmt: skip
    return {
        "summary": {k: v for k, v in summary.items() if k not in TIMING_SUMMARY | PROVENANCE},
        "metrics": [{k: v for k, v in r.items() if k not in TIMING_METRICS} for r in metrics],
        "last_step": steps[-1],
        # The arrays' sums; the meta item's own sum covers its timings too (train_seconds).
        "meta": {
            "loop": loop,
            "fingerprint": meta["fingerprint"],
            "checksums": {k: v for k, v in meta["checksums"].items() if k != "meta"},
        },
        "arrays": checkpoint_arrays(workdir / "checkpoints" / str(steps[-1])),
    }


def assert_same_run(workdir: Path, reference: dict) -> None:
    """Bitwise the reference run: arrays, loop state, metrics and summary (minus timings)."""
    assert epochs_logged(workdir) == [1, 2]  # every epoch exactly once
    got = outcome(workdir)
    for key in ("summary", "metrics", "last_step", "meta"):
        assert got[key] == reference[key], key
    assert got["arrays"].keys() == reference["arrays"].keys()
    for name, want in reference["arrays"].items():
        have = got["arrays"][name]
        assert have.dtype == want.dtype and have.shape == want.shape, name
        assert have.tobytes() == want.tobytes(), f"{name} differs"


def corrupt_largest_file(directory: Path) -> Path:
    """Flip 16 bytes in the middle of the largest file under `directory`."""
    target = max((p for p in directory.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    data = bytearray(target.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(b ^ 0xFF for b in data[middle : middle + 16])
    target.write_bytes(bytes(data))
    return target


# --- The reference run, and a run killed before its summary -------------------------------------


@dataclasses.dataclass
class Reference:
    workdir: Path
    outcome: dict
    typo: Result  # --config.model=resnt in the same (then nonexistent) workdir, first
    typo_left_workdir: bool


@pytest.fixture(scope="session")
def reference(bins, tmp_path_factory) -> Reference:
    workdir = tmp_path_factory.mktemp("reference") / "run"
    typo = bins.train(workdir, "--config.model=resnt")
    typo_left_workdir = workdir.exists()
    result = bins.train(workdir)  # the corrected command, in the same workdir
    assert result.status == 0, result.stderr[-3000:]
    return Reference(workdir, outcome(workdir), typo, typo_left_workdir)


@pytest.fixture(scope="session")
def interrupted(bins, tmp_path_factory) -> Path:
    """Killed with -9 once the last epoch's checkpoint committed, before the summary."""
    workdir = tmp_path_factory.mktemp("interrupted") / "run"
    result = bins.train(workdir, fault="kill@checkpoint_done:2")
    assert result.status == -signal.SIGKILL, result.stderr[-3000:]
    assert committed_steps(workdir) == [8, 16] and epochs_logged(workdir) == [1, 2]
    assert not (workdir / "summary.json").exists()
    return workdir


def copy_run(source: Path, tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(source, target)
    return target


def test_failed_validation_writes_nothing_and_the_corrected_command_works(reference):
    assert_user_error(reference.typo, "unknown model 'resnt'", "did you mean 'resnet'")
    assert not reference.typo_left_workdir
    assert reference.outcome["summary"]["test_count"] == 10_000  # the corrected run finished


# --- kill -9 at moments spread over a run ------------------------------------------------------


def _left(steps: list[int], epochs: list[int], tmp: bool = False, summary: bool = False):
    """What the kill must have left: committed checkpoints, logged epochs, a partial checkpoint
    write, summary.json."""

    def check(workdir: Path) -> None:
        assert committed_steps(workdir) == steps
        assert epochs_logged(workdir) == epochs
        partial = list((workdir / "checkpoints").glob("*.orbax-checkpoint-tmp*"))
        assert bool(partial) == tmp, partial
        assert (workdir / "summary.json").exists() == summary

    return check


# The default run keeps a kill mid-write, one right after a commit (TensorBoard then held the
# epoch's scalars twice or lost them) and one mid-chunk.
_SLOW = pytest.mark.slow
KILL_MOMENTS = [
    pytest.param("metrics:1", _left([], [1]), marks=_SLOW),  # epoch 1 logged, no checkpoint yet
    ("checkpoint_writing:1", _left([], [1], tmp=True)),  # Orbax writing epoch 1's checkpoint
    ("checkpoint_done:1", _left([8], [1])),  # before epoch 2's line
    ("chunk:7", _left([8], [1])),  # mid-chunk: epoch 2 computing its third chunk
    # (the end's checkpoint committed, the summary not written: the `interrupted` fixture)
    pytest.param("summary:1", _left([8, 16], [1, 2], summary=True), marks=_SLOW),
]


def _moment_id(moment) -> str:
    return (moment.values[0] if hasattr(moment, "values") else moment[0]).replace(":", "-")


@pytest.mark.parametrize("moment, left", KILL_MOMENTS, ids=[_moment_id(m) for m in KILL_MOMENTS])
def test_kill_9_then_rerun_is_bitwise_the_uninterrupted_run(bins, reference, tmp_path, moment,
                                                            left):  # fmt: skip
    workdir = tmp_path / "run"
    killed = bins.train(workdir, fault=f"kill@{moment}")
    assert killed.status == -signal.SIGKILL, killed.stderr[-3000:]
    left(workdir)
    before = snapshot(workdir)
    rerun = bins.train(workdir)
    assert rerun.status == 0, rerun.stderr[-3000:]
    assert_same_run(workdir, reference.outcome)
    assert not list((workdir / "checkpoints").glob("*.orbax-checkpoint-tmp*"))  # replaced
    # TensorBoard holds every epoch once: the killed process's events reached the file as they
    # were logged (written in the loop, not queued for a thread the kill took down).
    board = events.scalars(workdir / "tensorboard")
    assert [step for step, _ in board["epoch/train_loss"]] == [8, 16]
    if moment.startswith("summary"):  # a finished run is returned, not trained again
        assert snapshot(workdir) == before
        assert "already holds a finished run" in rerun.stderr


@pytest.mark.slow
def test_kill_9_before_the_summary_then_rerun_is_bitwise_the_uninterrupted_run(
    bins, reference, interrupted, tmp_path
):
    workdir = copy_run(interrupted, tmp_path)
    rerun = bins.train(workdir)
    assert rerun.status == 0, rerun.stderr[-3000:]
    assert "from the checkpoint of step 16 " in rerun.stderr
    assert_same_run(workdir, reference.outcome)


# --- SIGTERM / SIGINT: a checkpoint at the next chunk boundary, exit status 75 -----------------


@pytest.mark.parametrize(
    "sig, chunk, step, where",
    [
        (signal.SIGTERM, 3, 6, "epoch 1, after chunk 3 of 4"),
        pytest.param(signal.SIGINT, 6, 12, "epoch 2, after chunk 2 of 4", marks=_SLOW),
    ],
    ids=["SIGTERM", "SIGINT"],
)
def test_stop_signal_saves_mid_epoch_and_the_rerun_resumes_bitwise(
    bins, reference, tmp_path, sig, chunk, step, where
):
    """The signal arrives while a chunk computes (the run is paused there by the test hook)."""
    workdir = tmp_path / "run"
    child = bins.start_train(workdir, fault=f"pause=120@chunk:{chunk}")
    bins.server.wait_for(child, "test hook: pid")
    os.kill(child.pid, sig)
    stopped = bins.finish(child)
    assert_one_line(stopped, 75, "preempted: ", f"stopped by {sig.name}", where, "rerun")
    assert "KeyboardInterrupt" not in stopped.stderr
    assert committed_steps(workdir)[-1] == step  # (epoch 1's checkpoint too, for SIGINT)
    meta = rundir.strict_loads((workdir / "checkpoints" / str(step) / "meta" / "metadata")
                               .read_text())  # fmt: skip
    assert (meta["loop"]["epoch"], meta["loop"]["chunk"]) == ((chunk - 1) // 4, (chunk - 1) % 4 + 1)
    if sig == signal.SIGTERM:  # stopped after step 6: chunks of 4 end at 4 and 8, not there
        other = bins.train(workdir, "--config.steps_per_chunk=4")
        assert_one_line(other, 1, "error: ", f"checkpoint of step {step} stopped inside epoch 1",
                        "chunks of 4 steps (steps_per_chunk=4) do not end")  # fmt: skip
        assert committed_steps(workdir)[-1] == step
    rerun = bins.train(workdir)
    assert rerun.status == 0, rerun.stderr[-3000:]
    assert f"from the checkpoint of step {step} " in rerun.stderr
    assert_same_run(workdir, reference.outcome)


def test_a_stop_signal_after_the_last_epoch_says_the_run_ends_with_its_summary(bins, tmp_path):
    """SIGTERM once the last checkpoint is written: no boundary is left to stop at, so the run
    says that it finishes, and does (exit 0, summary.json), not that it is stopping."""
    workdir = tmp_path / "run"
    child = bins.start_train(workdir, fault="pause=120@checkpoint_done:2")
    bins.server.wait_for(child, "test hook: pid")
    os.kill(child.pid, signal.SIGTERM)
    done = bins.finish(child)
    assert done.status == 0 and (workdir / "summary.json").exists(), done.stderr[-3000:]
    warnings = [x for x in done.stderr.splitlines() if x.startswith("W") and "SIGTERM" in x]
    assert len(warnings) == 1 and "training is done and its final test is running" in warnings[0]
    assert "stopping at the next chunk boundary" not in done.stderr


# --- One writer per workdir --------------------------------------------------------------------


@pytest.mark.slow
def test_second_run_is_refused_naming_the_holder_and_a_dead_holder_blocks_nothing(
    bins, reference, tmp_path
):
    workdir = tmp_path / "run"
    first = bins.start_train(workdir, fault="pause=120@chunk:3")
    bins.server.wait_for(first, "test hook: pid")
    before = snapshot(workdir)
    second = bins.train(workdir)
    assert_user_error(second, "is in use by", f"pid {first.pid} on host {socket.gethostname()}")
    assert snapshot(workdir) == before
    os.kill(first.pid, signal.SIGKILL)  # the holder dies without releasing anything
    assert bins.finish(first).status == -signal.SIGKILL
    third = bins.train(workdir)
    assert third.status == 0, third.stderr[-3000:]
    assert_same_run(workdir, reference.outcome)


# --- Corrupt checkpoints and run files ---------------------------------------------------------


@pytest.mark.parametrize("item", ["state", "best"])
def test_corrupt_latest_checkpoint_is_moved_aside_and_the_run_falls_back(
    bins, reference, interrupted, tmp_path, item
):
    workdir = copy_run(interrupted, tmp_path)
    bad = corrupt_largest_file(workdir / "checkpoints" / "16" / item)
    bad_sha = hashlib.sha256(bad.read_bytes()).hexdigest()
    rerun = bins.train(workdir)
    assert rerun.status == 0, rerun.stderr[-3000:]
    warnings = [x for x in rerun.stderr.splitlines() if x.startswith("W")]
    moved = workdir / "corrupt_checkpoints" / "16"
    about = [x for x in warnings if "corrupt_checkpoints" in x]  # one line names both places
    assert len(about) == 1 and f"checkpoint {workdir / 'checkpoints' / '16'}" in about[0], warnings
    assert f"moved it to {moved}" in about[0]
    assert any("dropping epochs [2]" in x for x in warnings), warnings  # epoch 2 is rerun
    moved_file = moved / bad.relative_to(workdir / "checkpoints" / "16")
    assert hashlib.sha256(moved_file.read_bytes()).hexdigest() == bad_sha  # kept, not deleted
    assert (moved / "REASON.txt").read_text().strip()
    assert "from the checkpoint of step 8 " in rerun.stderr
    assert_same_run(workdir, reference.outcome)


def test_a_forged_loop_state_is_refused_and_the_run_falls_back(
    bins, reference, interrupted, tmp_path
):
    """The last checkpoint's meta item edited to say 1 epoch done (its arrays untouched): the
    restore refuses it as it refuses a corrupt array, and the run ends as the uninterrupted one
    (before, it trained 2 more epochs on top of step 16)."""
    workdir = copy_run(interrupted, tmp_path)
    meta = workdir / "checkpoints" / "16" / "meta" / "metadata"
    forged = json.loads(meta.read_text())
    forged["loop"]["epoch"] = 1
    forged["loop"]["history"] = forged["loop"]["history"][:1]
    meta.write_text(json.dumps(forged))
    rerun = bins.train(workdir)
    assert rerun.status == 0, rerun.stderr[-3000:]
    assert "its loop state (epoch, history, best) does not match its checksum" in rerun.stderr
    assert (workdir / "corrupt_checkpoints" / "16" / "REASON.txt").is_file()
    assert "from the checkpoint of step 8 " in rerun.stderr
    assert_same_run(workdir, reference.outcome)


def test_no_good_checkpoint_is_one_line_and_nothing_is_deleted(bins, interrupted, tmp_path):
    workdir = copy_run(interrupted, tmp_path)
    for step in (8, 16):
        corrupt_largest_file(workdir / "checkpoints" / str(step) / "state")
    files = snapshot(workdir)
    result = bins.train(workdir)
    assert_one_line(result, 1, "error: ", "no checkpoint of", "verifies", "[16, 8]")
    assert committed_steps(workdir) == [] and not (workdir / "summary.json").exists()
    after = snapshot(workdir)
    files.pop(".lock")  # (the failed run held the lock: its pid is written there)
    for name, sha in files.items():  # every file is still there, the checkpoints moved
        new_name = name.replace("checkpoints/", "corrupt_checkpoints/", 1)
        assert after.get(name, after.get(new_name)) == sha, name


LATE_READ = """
import asyncio, sys
import tensorstore as ts

if sys.argv[1] == "hooked":
    from mnist_jax.training import checkpoint  # installs the hook
loop = asyncio.new_event_loop()
promise, future = ts.Promise.new()
async def wait():
    await future
task = loop.create_task(wait())
loop.run_until_complete(asyncio.sleep(0.01))
task.cancel()
loop.close()
promise.set_result(1)  # the read completes and tries to wake the closed loop
class Broken:
    def __del__(self):
        raise RuntimeError("a real problem")
Broken()
"""


@pytest.mark.parametrize("mode", ["plain", "hooked"])
def test_reads_finishing_after_a_failed_restore_print_nothing(mode):
    """A TensorStore read that completes after Orbax closed its event loop (a restore that
    failed on another array) prints a traceback unless the checkpoint module is loaded; any
    other unraisable exception is still printed. (A subprocess: pytest replaces the hook.)"""
    result = subprocess.run(
        [sys.executable, "-c", LATE_READ, mode], cwd=ROOT, capture_output=True, text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu"), timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert ("Event loop is closed" in result.stderr) == (mode == "plain"), result.stderr
    assert "a real problem" in result.stderr


def test_torn_last_metrics_line_is_repaired_with_a_warning(bins, reference, interrupted, tmp_path):
    workdir = copy_run(interrupted, tmp_path)
    shutil.rmtree(workdir / "checkpoints" / "16")  # resume from epoch 1's checkpoint
    with open(workdir / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 3, "step": 24, "train_lo')  # a kill in the middle of a write
    rerun = bins.train(workdir)
    assert rerun.status == 0, rerun.stderr[-3000:]
    warnings = [x for x in rerun.stderr.splitlines() if x.startswith("W")]
    assert any("metrics.jsonl: ignoring a torn last line" in x for x in warnings), warnings
    assert any("dropping epochs [2]" in x for x in warnings), warnings
    assert_same_run(workdir, reference.outcome)


# --- Divergence --------------------------------------------------------------------------------


def assert_strict_json_everywhere(workdir: Path) -> None:
    """Every JSON file of the run directory parses without NaN/Infinity."""
    paths = [*workdir.rglob("*.json"), *workdir.rglob("*.jsonl"), *workdir.rglob("metadata")]
    for path in paths:
        for line in (
            path.read_text().splitlines() if path.suffix == ".jsonl" else [path.read_text()]
        ):
            rundir.strict_loads(line)


def test_divergence_at_once_is_one_line_and_writes_no_summary(bins, tmp_path):
    workdir = tmp_path / "run"
    result = bins.train(workdir, "--config.optimizer.name=sgd",
                        "--config.optimizer.learning_rate=1e6")  # fmt: skip
    line = assert_one_line(result, 1, "error: ", "optimizer.learning_rate=1e+06 with sgd")
    assert re.search(r"training diverged at epoch 1, step \d+: the loss is (nan|inf)", line), line
    assert not (workdir / "summary.json").exists()
    assert committed_steps(workdir) == [] and epochs_logged(workdir) == []
    assert_strict_json_everywhere(workdir)


@pytest.mark.slow
def test_divergence_later_keeps_the_last_good_checkpoint(bins, tmp_path):
    """SGD at learning rate 1e4 overflows in epoch 2 (measured: step 11; from 4e3 to 2e4 all
    overflow in epoch 2) while epoch 1's checkpoint is written in the background: it commits
    all the same, and a rerun resumes from it and diverges at the same step."""
    workdir = tmp_path / "run"
    args = ("--config.optimizer.name=sgd", "--config.optimizer.learning_rate=1e4")
    first = bins.train(workdir, *args)
    line = assert_one_line(
        first, 1, "error: ", "training diverged at epoch 2, step ", "learning_rate=10000 with sgd",
        "last good checkpoint is kept",
    )  # fmt: skip
    assert committed_steps(workdir) == [8] and epochs_logged(workdir) == [1]
    assert not (workdir / "summary.json").exists()
    assert_strict_json_everywhere(workdir)
    again = bins.train(workdir, *args)
    assert "from the checkpoint of step 8 " in again.stderr  # it restores (verified)
    assert assert_one_line(again, 1, "error: ") == line


def test_non_finite_epoch_is_never_best():
    best = BestTracker()
    assert best.update(1, 0.5, 0.9, 0.0)
    for bad in (float("nan"), float("inf"), -float("inf")):
        assert not best.update(2, bad, 1.0, 0.0)
    assert (best.epoch, best.val_loss, best.epochs_since_best) == (1, 0.5, 3)


# --- User errors: one line, status 1, nothing changed ------------------------------------------


def _files(tmp_path: Path) -> dict[str, Path]:
    """Bad files used by the cases below."""
    d = tmp_path / "inputs"
    d.mkdir()
    (d / "broken.py").write_text("def get_config(:\n")
    (d / "raises.py").write_text("def get_config():\n    return {}['nope']\n")
    (d / "empty.py").write_text("X = 1\n")
    (d / "a_file").write_text("not a directory\n")
    return {p.stem: p for p in d.iterdir()}


def _corrupt(name: str, text: str):
    def setup(workdir: Path) -> None:
        (workdir / name).write_text(text)

    return setup


# (id, workdir: 'run' = a copy of the interrupted run | 'none' = does not exist | a file name
#  from _files, extra setup, extra arguments, what the error line must name)
TRAIN_ERRORS = [
    ("dropout", "run", None, ["--config.mlp.dropout=1.5"], ["mlp.dropout=1.5", "[0, 1)"]),
    ("every_epochs", "run", None, ["--config.checkpoint.every_epochs=0"],
     ["checkpoint.every_epochs=0"]),
    ("model-typo", "run", None, ["--config.model=resnt"], ["'resnt'", "'resnet'"]),
    ("no-such-key", "run", None, ["--config.nosuchkey=1"], ["'nosuchkey'"]),
    ("misspelt-key", "run", None, ["--config.mlp.dropuot=0.1"], ["'mlp.dropuot'", "mlp.dropout"]),
    ("not-a-number", "run", None, ["--config.num_epochs=abc"], ["abc"]),
    ("lr-negative", "run", None, ["--config.optimizer.learning_rate=-1"],
     ["optimizer.learning_rate=-1"]),
    ("optimizer", "run", None, ["--config.optimizer.name=lamb"], ["'lamb'"]),
    ("seed", "run", None, ["--config.seed=-1"], ["seed=-1"]),
    ("val-fraction", "run", None, ["--config.data.validation_fraction=1.0"],
     ["data.validation_fraction=1.0"]),
    ("steps-per-chunk", "run", None, ["--config.steps_per_chunk=-1"], ["steps_per_chunk=-1"]),
    ("parallel-mode", "run", None, ["--config.parallel.mode=pjit"], ["'pjit'"]),
    ("patience", "run", None, ["--config.early_stopping.patience=-1"],
     ["early_stopping.patience=-1"]),
    ("variant", "run", None, ["--config=configs/mlp.py:quik"], ["'quik'"]),
    ("config-missing", "run", None, ["--config=configs/nosuch.py"], ["configs/nosuch.py"]),
    ("config-syntax", "run", None, ["--config={broken}"], ["broken.py", "SyntaxError"]),
    ("config-raises", "run", None, ["--config={raises}"], ["raises.py", "KeyError"]),
    ("config-no-function", "run", None, ["--config={empty}"], ["empty.py"]),
    ("positional", "run", None, ["extra"], ["unexpected arguments: extra"]),
    ("changed-config", "run", None, ["--config.optimizer.learning_rate=0.1"],
     ["different config", "optimizer.learning_rate"]),
    ("config-json", "run", _corrupt("config.json", '{"model": "mlp", '), [], ["config.json"]),
    ("summary-json", "run", _corrupt("summary.json", '{"test_accuracy": 0.9'), [],
     ["summary.json"]),
    ("summary-nan", "run", _corrupt("summary.json", '{"test_loss": NaN}'), [], ["summary.json"]),
    ("workdir-file", "a_file", None, [], ["a_file", "not a directory"]),
    ("workdir-under-file", "a_file/run", None, [], ["a_file", "not a directory"]),
    ("batch-too-large", "none", None, ["--config.batch_size=100000"],
     ["batch_size=100000", "larger than"]),
    ("microbatches", "none", None, ["--config.microbatches=3"], ["microbatches=3"]),
    ("data-dir", "none", None, ["--config.data.dir=/nonexistent/mnist"], ["/nonexistent/mnist"]),
    ("config-json-list", "run", _corrupt("config.json", "[]"), [],
     ["config.json", "holds a JSON list, not an object"]),
    ("epochs-beyond-int32", "none", None, ["--config.num_epochs=1000000000"],
     ["num_epochs=1000000000", "int32", "at most"]),
    ("beyond-memory", "none", None, ["--config.mlp.hidden_sizes=100000,100000"],
     ["has 10,0", "parameters: about", "GiB to train", "make config.mlp smaller"]),
    ("activations-beyond-memory", "none", None,
     ["--config.model=cnn", "--config.cnn.channels=4096,4096", "--config.data.train_fraction=1.0",
      "--config.batch_size=50000"],
     ["'cnn' at 50000 examples per device", "GiB of activations", "lower batch_size"]),
    ("kernel-beyond-map", "none", None, ["--config.model=cnn", "--config.cnn.kernel_sizes=100,100"],
     ["kernel_sizes[0]=100", "larger than the 28x28 map"]),
]  # fmt: skip


@pytest.mark.parametrize(
    "where, setup, args, needles", [c[1:] for c in TRAIN_ERRORS], ids=[c[0] for c in TRAIN_ERRORS]
)
def test_bad_training_input_is_one_line_and_changes_nothing(
    bins, interrupted, tmp_path, where, setup, args, needles
):
    files = _files(tmp_path)
    if where == "run":
        workdir = copy_run(interrupted, tmp_path)
    elif where == "none":
        workdir = tmp_path / "new_run"
    else:
        workdir = tmp_path / "inputs" / where
    if setup:
        setup(workdir)
    args = [a.format(**files) for a in args]
    parent = tmp_path / "inputs"
    before, before_inputs = snapshot(workdir), snapshot(parent)
    if args and args[0].startswith("--config="):  # replaces BASE's config file
        result = bins.run("mnist_jax.main", args[0], *BASE[1:], f"--workdir={workdir}", *args[1:])
    else:
        result = bins.train(workdir, *args)
    named = [n.format(**{k: str(v) for k, v in files.items()}) for n in needles]
    assert_user_error(result, *named)
    assert snapshot(workdir) == before and snapshot(parent) == before_inputs


def _broken_run(interrupted: Path, tmp_path: Path, name: str, text: str) -> Path:
    workdir = copy_run(interrupted, tmp_path)
    (workdir / name).write_text(text)
    return workdir


EVALUATE_ERRORS = [
    ("torn-summary", "summary.json", '{"test_accuracy": 0.9', ["summary.json", "not valid JSON"]),
    ("metrics-line", "metrics.jsonl", 'garbage\n{"epoch": 2}\n', ["metrics.jsonl line 1"]),
    ("config-json", "config.json", "[1, 2", ["config.json"]),
    ("config-list", "config.json", "[]", ["config.json", "holds a JSON list, not an object"]),
    ("summary-list", "summary.json", "[]", ["summary.json", "holds a JSON list"]),
    (
        "summary-text",
        "summary.json",
        '{"test_accuracy": "high"}',
        ["summary.json", "'test_accuracy' is 'high', not a number"],
    ),
    ("corrupt-checkpoint", "checkpoints", None, ["checkpoints/16", "cannot be evaluated"]),
    ("no-checkpoint", "checkpoints", "", ["has no checkpoint"]),
    ("missing-workdir", None, None, ["does not exist"]),
]


@pytest.mark.parametrize(
    "file, text, needles", [c[1:] for c in EVALUATE_ERRORS], ids=[c[0] for c in EVALUATE_ERRORS]
)
def test_bad_run_directory_fails_evaluate_at_once(bins, interrupted, tmp_path, file, text, needles):
    """MNIST_DIR points nowhere: each error comes before any data is loaded."""
    workdir = copy_run(interrupted, tmp_path) if file else tmp_path / "nowhere"
    if file == "checkpoints":
        if text is None:
            corrupt_largest_file(workdir / "checkpoints" / "16" / "best")
        else:
            shutil.rmtree(workdir / "checkpoints")
    elif file:
        (workdir / file).write_text(text)
    before = snapshot(workdir)
    result = bins.run("mnist_jax.evaluate", f"--workdirs={workdir}",
                      f"--output_dir={tmp_path / 'out'}",
                      env={"MNIST_DIR": str(tmp_path / "no_data")})  # fmt: skip
    assert_user_error(result, *needles)
    assert snapshot(workdir) == before


STUDY_ERRORS = [
    ("dropout", 'axes=[{{"mlp.dropout": [0.1, 1.5]}}]', ["mlp.dropout=1.5"]),
    ("every-epochs", 'axes=[], overrides={{"checkpoint.every_epochs": 0}}',
     ["checkpoint.every_epochs=0"]),
    ("unknown-key", 'axes=[{{"mlp.dropuot": [0.1]}}]', ["'mlp.dropuot'", "'mlp.dropout'"]),
    ("model", 'axes=[{{"model": ["mlp", "resnt"]}}]', ["'resnt'"]),
    ("raises-on-import", "RAISE", ["s.py", "line 2", "ZeroDivisionError"]),
    ("get-study-raises", "get_study raises", ["s.py", "get_study('')", "KeyError"]),
    ("base-missing", "bases", ["configs/nosuch.py"]),
    ("base-raises", "base raises", ["raises.py", "KeyError"]),
]  # fmt: skip


def _study(tmp_path: Path, case: str, files: dict[str, Path]) -> Path:
    mlp = ROOT / "configs" / "mlp.py"
    head = "from mnist_jax.studies.study import Study\n"
    if case == "RAISE":
        body = "x = 1 / 0\n"
    elif case == "get_study raises":
        body = "def get_study(variant):\n    return {}['study']\n"
    elif case in ("bases", "base raises"):
        base = "configs/nosuch.py" if case == "bases" else str(files["raises"])
        body = f"def get_study(variant):\n    return Study(bases={{'mlp': {base!r}}}, axes=[])\n"
    else:
        fields = case.format()
        body = (
            f"def get_study(variant):\n    return Study(bases={{'mlp': {str(mlp)!r}}}, {fields})\n"
        )
    path = tmp_path / "s.py"
    path.write_text(head + body)
    return path


@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "run"])
@pytest.mark.parametrize(
    "case, needles", [c[1:] for c in STUDY_ERRORS], ids=[c[0] for c in STUDY_ERRORS]
)
def test_bad_study_is_one_line_and_writes_nothing(bins, tmp_path, case, needles, dry_run):
    """The sweep validates every trial as training would, in a dry run too."""
    files = _files(tmp_path)
    study = _study(tmp_path, case, files)
    out = tmp_path / "out"
    result = bins.run("mnist_jax.sweep", f"--study={study}", f"--output_dir={out}",
                      *(["--dry_run"] if dry_run else []))  # fmt: skip
    assert_user_error(result, *needles)
    assert not out.exists()


def test_read_only_workdir_is_one_line(interrupted, tmp_path, mnist_dir):
    """A read-only bind mount (root ignores file modes, so chmod proves nothing here)."""
    workdir = copy_run(interrupted, tmp_path)
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) to make a private read-only bind mount")
    mount = f"mount --bind {workdir} {workdir} && mount -o remount,bind,ro {workdir}"
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"{mount} && touch {workdir}/x"],
                           capture_output=True, text=True)  # fmt: skip
    if probe.returncode == 0 or "Read-only" not in probe.stderr:
        pytest.skip(f"cannot make a read-only bind mount here: {probe.stderr.strip()[:200]}")
    before = snapshot(workdir)
    command = " ".join([sys.executable, "-m", "mnist_jax.main", *BASE, f"--workdir={workdir}"])
    env = dict(os.environ, PYTHONPATH=str(ROOT), MNIST_DIR=mnist_dir, JAX_PLATFORMS="cpu")
    env.pop(faults.ENV, None)
    proc = subprocess.run(["unshare", "-m", "sh", "-c", f"{mount} && exec {command}"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert_user_error(Result(proc.returncode, proc.stdout, proc.stderr), str(workdir),
                      "not writable")  # fmt: skip
    assert snapshot(workdir) == before


def test_full_disk_under_tensorboard_is_one_line_within_seconds(tmp_path, mnist_dir):
    """A full tmpfs under <workdir>/tensorboard (a private mount): the event writer's failure
    stops the run at once with one line, where tensorboardX's writer thread died and the next
    event blocked training forever; no result is left that looks finished."""
    workdir = tmp_path / "run"
    board = workdir / "tensorboard"
    board.mkdir(parents=True)
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) to mount a private tmpfs")
    mount = (f"mount -t tmpfs -o size=8k tmpfs {board} && "
             f"(dd if=/dev/zero of={board}/fill bs=1k count=8 2>/dev/null || true)")  # fmt: skip
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"{mount} && echo x > {board}/x"],
                           capture_output=True, text=True)  # fmt: skip
    if probe.returncode == 0 or "echo" not in probe.stderr:  # the write failed: full
        pytest.skip(f"cannot mount a full tmpfs here: {probe.stderr.strip()[:200]}")
    command = " ".join([sys.executable, "-m", "mnist_jax.main", *BASE, f"--workdir={workdir}"])
    env = dict(os.environ, PYTHONPATH=str(ROOT), MNIST_DIR=mnist_dir, JAX_PLATFORMS="cpu")
    env.pop(faults.ENV, None)
    proc = subprocess.run(["unshare", "-m", "sh", "-c", f"{mount} && exec {command}"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    result = Result(proc.returncode, proc.stdout, proc.stderr)
    assert_user_error(result, f"cannot write TensorBoard events in {board}", "No space left")
    assert not (workdir / "summary.json").exists()


def _on_a_small_tmpfs(where: Path, size: str, mnist_dir: str, module: str, *args: str) -> Result:
    """`python -m module args` with a tmpfs of `size` mounted on `where`, in a mount namespace
    of its own (unshare -m: nothing outside sees it); skipped where none can be made."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) to mount a private tmpfs")
    command = shlex.join([sys.executable, "-m", module, *args])
    env = dict(os.environ, PYTHONPATH=str(ROOT), MNIST_DIR=mnist_dir, JAX_PLATFORMS="cpu")
    env.pop(faults.ENV, None)
    mount = f"mount -t tmpfs -o size={size} tmpfs {shlex.quote(str(where))}"
    proc = subprocess.run(["unshare", "-m", "sh", "-c", f"{mount} && exec {command}"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    if "mount:" in proc.stderr:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()[:200]}")
    return Result(proc.returncode, proc.stdout, proc.stderr)


def test_a_workdir_on_a_full_disk_is_one_line_with_no_orbax_tracebacks(tmp_path, mnist_dir):
    """A 3 MB tmpfs as the workdir (a private mount): the first checkpoint does not fit. Orbax
    reports it from each of its writer threads; the user sees one line, exit 1."""
    small = tmp_path / "small"
    small.mkdir()
    workdir = small / "run"
    small_mlp = ("--config.mlp.hidden_sizes=256,256", "--config.data.train_fraction=0.02")
    result = _on_a_small_tmpfs(small, "3m", mnist_dir, "mnist_jax.main", *BASE[:1], *small_mlp,
                               f"--workdir={workdir}")  # fmt: skip
    assert_user_error(result, f"cannot write a checkpoint in {workdir / 'checkpoints'}",
                      "No space left on device", "resume")  # fmt: skip


def test_full_disk_under_evaluate_or_export_is_one_line(bins, interrupted, tmp_path, mnist_dir):
    """evaluate into a tmpfs with 100 KB (a private mount), export onto /dev/full: one line
    naming where, exit 1, no traceback, no hang; the run directory unchanged."""
    before = snapshot(interrupted)
    result = bins.run("mnist_jax.export", f"--workdir={interrupted}", "--output=/dev/full",
                      "--overwrite")  # fmt: skip
    assert_user_error(result, "cannot write into /dev/full", "No space left on device")
    out = tmp_path / "small"
    out.mkdir()
    result = _on_a_small_tmpfs(out, "100k", mnist_dir, "mnist_jax.evaluate",
                               f"--workdirs={interrupted}", f"--output_dir={out / 'eval'}",
                               "--corruptions=none")  # fmt: skip
    assert_user_error(result, f"cannot write into {out / 'eval'}", "No space left on device")
    assert snapshot(interrupted) == before


def test_a_second_compare_into_an_output_directory_in_use_is_one_line(bins, tmp_path):
    """Two compares on one OUTDIR each took a trial's lock from the other and both failed: the
    second now stops at once, naming the first, and writes nothing."""
    out = tmp_path / "compare"
    first = rundir.RunDir(out, what="study output directory")
    first.lock()  # what the first compare's sweep holds until its evaluation is done
    try:
        before = snapshot(out)
        second = bins.run("mnist_jax.launch", "compare", str(out), "--quick", "--seeds=1")
        assert snapshot(out) == before
    finally:
        first.release()
    assert_user_error(second, f"study output directory {out} is in use by pid {os.getpid()}")


def test_a_killed_evaluation_leaves_the_old_comparison_or_none_never_a_mixture(
    bins, interrupted, tmp_path
):
    """kill -9 of evaluate when its new comparison is complete but not in place leaves the old
    one byte for byte; in the middle of moving it in, no comparison.json at all (nothing that
    looks finished); the next evaluate then completes and clears the killed one's staging."""
    out = tmp_path / "eval"
    args = [f"--workdirs={interrupted}", f"--output_dir={out}", "--corruptions=none",
            "--latency_calls=5", "--throughput_min_seconds=0.05"]  # fmt: skip
    assert bins.run("mnist_jax.evaluate", *args).status == 0
    old = snapshot(out)
    changed = [*args, "--ece_bins=10"]  # other inputs: a new comparison replaces the old
    killed = bins.run("mnist_jax.evaluate", *changed, fault="kill@comparison_staged:1")
    assert killed.status == -signal.SIGKILL, killed.stderr[-3000:]
    assert {k: v for k, v in snapshot(out).items() if ".incoming." not in k} == old
    killed = bins.run("mnist_jax.evaluate", *changed, fault="kill@comparison_file_published:2")
    assert killed.status == -signal.SIGKILL, killed.stderr[-3000:]
    assert not (out / "comparison.json").exists() and list(out.glob(".incoming.*"))
    assert bins.run("mnist_jax.evaluate", *changed).status == 0
    comparison = json.loads((out / "comparison.json").read_text())
    assert comparison["options"]["ece_bins"] == 10, comparison["options"]
    assert all((out / f).is_file() for f in comparison["figures"].values())
    assert not list(out.glob(".incoming.*"))


def _processes_naming(text: str) -> list[int]:
    """The pids whose command line contains `text`."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            if text in cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                pids.append(int(cmdline.parent.name))
    return pids


def test_a_killed_launcher_takes_its_children_with_it(tmp_path, mnist_dir):
    """kill -9 of `launch compare` while its sweep's workers train: none of them is left
    running, and the run directory's lock is free for an immediate rerun."""
    if not Path("/proc/self/cmdline").exists():
        pytest.skip("needs /proc to list processes")
    out = tmp_path / "compare"
    env = dict(os.environ, PYTHONPATH=str(ROOT), MNIST_DIR=mnist_dir, JAX_PLATFORMS="cpu")
    env.pop(faults.ENV, None)
    launcher = subprocess.Popen(
        [sys.executable, "-m", "mnist_jax.launch", "compare", str(out), "--configs=mlp",
         "--seeds=1", "--jobs=2", *BASE[1:], "--config.num_epochs=5000"],
        cwd=tmp_path, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    run = out / "mlp" / "seed_0"
    deadline = time.monotonic() + 120
    while not (run / "metrics.jsonl").exists():  # a worker, two levels down, is training
        assert launcher.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    os.kill(launcher.pid, signal.SIGKILL)
    launcher.wait()
    deadline = time.monotonic() + 15
    while (left := _processes_naming(str(out))) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in left:  # a failure here leaves no trainings behind
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    assert not left, "children of the killed launcher still run"
    # A process killed is gone from /proc's command lines before its files are closed: the
    # lock follows within moments, and then a rerun may start ('in use by pid ...' before).
    while True:
        try:
            rundir.RunDir(run).check_usable()
            break
        except WorkdirBusyError:
            assert time.monotonic() < deadline, "the killed run's lock is still held"
            time.sleep(0.1)
    assert not (run / "summary.json").exists()


# --- Multi-process: every process agrees on the stop -------------------------------------------


def _launch(workdir: Path, log: Path, env: dict) -> subprocess.Popen:
    args = [sys.executable, "-m", "mnist_jax.launch", "multiprocess", "2", "configs/mlp.py",
            str(workdir), "--cpu_devices=1", *BASE[1:]]  # fmt: skip
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=log.open("w"),
                            stderr=subprocess.STDOUT)  # fmt: skip


def _wait_for(path: Path, text: str, proc: subprocess.Popen, timeout: float = 300) -> str:
    import time

    deadline = time.monotonic() + timeout
    while True:
        content = path.read_text(errors="replace") if path.exists() else ""
        if text in content:
            return content
        assert proc.poll() is None and time.monotonic() < deadline, content[-3000:]
        time.sleep(0.1)


@pytest.mark.slow
def test_stop_signal_reaching_one_process_stops_all_at_the_same_boundary(mnist_dir, tmp_path):
    """SIGTERM sent to process 1 alone, while both are paused in chunk 3: process 0 learns
    of it at the chunk boundary (an allgather), both save one checkpoint (step 6) and exit 75;
    the launcher exits 75; the rerun resumes from step 6 and finishes, each epoch once."""
    workdir = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(ROOT), MNIST_DIR=mnist_dir, JAX_PLATFORMS="cpu")
    launch = _launch(workdir, tmp_path / "launch.log", dict(env, **{faults.ENV: "pause=5@chunk:3"}))
    try:
        _wait_for(tmp_path / "launch.log", "test hook: pid", launch)
        log1 = _wait_for(workdir / "logs" / "process_1.log", "test hook: pid", launch)
        pid1 = int(re.search(r"test hook: pid (\d+)", log1).group(1))
        os.kill(pid1, signal.SIGTERM)
        status = launch.wait(timeout=180)
    finally:
        if launch.poll() is None:
            launch.kill()
    console = (tmp_path / "launch.log").read_text()
    log1 = (workdir / "logs" / "process_1.log").read_text()
    assert status == 75, console[-3000:]
    for text in (console, log1):
        assert "stopped by SIGTERM: checkpoint saved at epoch 1, after chunk 3 of 4" in text
    assert committed_steps(workdir) == [6] and epochs_logged(workdir) == []

    rerun = _launch(workdir, tmp_path / "rerun.log", env)
    assert rerun.wait(timeout=400) == 0, (tmp_path / "rerun.log").read_text()[-3000:]
    assert "from the checkpoint of step 6 " in (tmp_path / "rerun.log").read_text()
    assert epochs_logged(workdir) == [1, 2] and (workdir / "summary.json").exists()
    assert_strict_json_everywhere(workdir)


# --- Strict JSON from the study aggregation ----------------------------------------------------


def test_study_results_are_strict_json_even_from_a_non_finite_summary(tmp_path):
    from mnist_jax.studies import report, study

    mlp = str(ROOT / "configs" / "mlp.py")
    spec = study.Study(bases={"mlp": mlp}, axes=[{"mlp.dropout": [0.1, 0.2]}], name="s")
    trials = study.expand(spec)
    summaries = {
        t.name: {"test_accuracy": x, "best_val_accuracy": 0.5, "train_seconds": 1.0,
                 "num_params": 10}
        for t, x in zip(trials, [float("nan"), 0.9], strict=True)
    }  # fmt: skip
    paths = report.write_all(tmp_path, spec, trials, summaries, "cmd")
    results = rundir.strict_loads(paths["json"].read_text())
    means = [row["test_accuracy_mean"] for row in results["rows"]]
    assert means == [None, 0.9]
    assert json.loads(paths["json"].read_text()) == results
