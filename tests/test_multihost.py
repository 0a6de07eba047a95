"""Multi-process training for real: JAX processes on localhost talking through jax.distributed and
the CPU (gloo) collectives, exactly the code path of a multi-host cluster run.

The two end-to-end runs are marked slow (about 85 s and 50 s on a busy 2-core CPU); the others
take a few seconds each.
"""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, run_module, train_two_processes

FULL = os.environ.get("MNIST_JAX_DETERMINISM") == "full"  # the size docs/determinism.md records

# Small enough for a 2-core machine, long enough (2 x 84 steps) for differences to show.
# No dropout or augmentation: then 2x2 and 1x4 devices do bitwise the same per-device work and
# differ only in the order of the cross-process gradient sum (measured: 1e-8 in the epoch loss).
# With the MLP config's random shifts the two drifted to 6e-5 (train) / 9e-4 (val) after one
# epoch, with its shifts, rotations and scaling to 1.6e-4 (train) after two: the same sum-order
# rounding, amplified by training (see README, "Determinism"). The 'tree' test below has none.
FAST = (
    "--config.num_epochs=2",
    "--config.data.train_fraction=0.1",
    "--config.mlp.dropout=0",
    "--config.data.augment_shift=0",
    "--config.data.augment_rotation=0",
    "--config.data.augment_scale=0",
    "--config.parallel.cpu_kernels=stable",  # 'fast' kernels depend on the threads per device
    "--config.mlp.hidden_sizes=512,512",  # the width measured below (1024: 8e-4 in val loss)
)

# Restores the best parameters of a run's latest checkpoint in one process on one device and
# evaluates them on the full test set.
RESTORE_AND_EVALUATE = """
import json, sys
import jax
from mnist_jax.data import load_dataset
from mnist_jax.evaluation import runs
from mnist_jax.training.evaluator import SplitEvaluator
from mnist_jax.training.parallel import Parallel

run = runs.open_run(sys.argv[1])
model = runs.build_model(run.config)
variables = runs.restore_best(run, model)
par = Parallel("pmap")
test = load_dataset(run.config.data).test
metrics, _ = SplitEvaluator(par, model, test, 1000)(par.replicate(variables))
print(json.dumps({"accuracy": metrics["accuracy"], "count": metrics["count"],
                  "process_count": jax.process_count(), "devices": jax.device_count()}))
"""


# In each process of a 2-process run: both parallel modes see one axis over all 4 devices, and
# per-device outputs come back from every process in axis_index order.
AXIS_AND_GATHER = """
import json
import jax, jax.numpy as jnp, numpy as np
from absl import app
from jax import lax
from mnist_jax.core import platform
from mnist_jax.training.parallel import Parallel
from mnist_jax.training.steps import AXIS

def main(_):
    platform.initialize()
    out = {}
    for mode in ("pmap", "shard_map"):
        par = Parallel(mode)
        def fn(x, offset):
            i = lax.axis_index(AXIS)
            return lax.psum(x.sum() + 0 * offset, AXIS), jnp.full((3, 2), i)
        data = par.replicate((np.arange(5.0),))
        args = (*data, np.float32(0))
        program, _ = par.compile(fn, args, replicated_args=1, per_device_outputs=(False, True))
        total, per_device = program(*args)
        gathered = par.gather_shards(per_device)
        out[mode] = [float(par.to_host(total)), list(gathered.shape), gathered[:, 0, 0].tolist()]
    print("RESULT " + json.dumps([jax.process_index(), out]), flush=True)

app.run(main)
"""


def _metrics(workdir: Path) -> list[dict]:
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


@pytest.mark.core
def test_axis_spans_all_processes_in_both_modes(tmp_path):
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu",
               XLA_FLAGS="--xla_force_host_platform_device_count=2",
               MNIST_JAX_COORDINATOR=f"localhost:{port}", MNIST_JAX_NUM_PROCESSES="2")  # fmt: skip
    procs = [
        subprocess.Popen([sys.executable, "-c", AXIS_AND_GATHER], cwd=ROOT, text=True,
                         env=dict(env, MNIST_JAX_PROCESS_ID=str(i)),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for i in range(2)
    ]  # fmt: skip
    outputs = [p.communicate(timeout=180)[0] for p in procs]
    for i, (p, out) in enumerate(zip(procs, outputs, strict=True)):
        assert p.returncode == 0, out[-3000:]
        (line,) = [x for x in out.splitlines() if x.startswith("RESULT ")]
        process, result = json.loads(line.removeprefix("RESULT "))
        assert process == i
        for mode in ("pmap", "shard_map"):
            assert result[mode] == [40.0, [4, 3, 2], [0, 1, 2, 3]], (mode, result)


@pytest.mark.slow
def test_two_processes_match_one_process_and_checkpoint_restores_in_one(mnist_dir, tmp_path):
    """`launch.sh multiprocess 2` (2 CPU devices each, shard_map) trains like 1 process x 4
    devices (pmap): same per-epoch loss, same test accuracy; its checkpoint restores in 1."""
    one = tmp_path / "one"
    result = run_module(
        "mnist_jax.main", "--config=configs/mlp.py", f"--workdir={one}", *FAST, devices=4
    )
    assert result.returncode == 0, result.stderr[-3000:]

    two = tmp_path / "two"
    train_two_processes(two, *FAST)
    log1 = (two / "logs" / "process_1.log").read_text()
    assert "Connecting to the other processes" in log1 and "train loss" not in log1

    summary_one = json.loads((one / "summary.json").read_text())
    summary_two = json.loads((two / "summary.json").read_text())
    assert (summary_one["num_processes"], summary_one["num_devices"]) == (1, 4)
    assert (summary_two["num_processes"], summary_two["num_devices"]) == (2, 4)
    m1, m2 = _metrics(one), _metrics(two)
    assert [r["epoch"] for r in m1] == [r["epoch"] for r in m2] == [1, 2]
    for a, b in zip(m1, m2, strict=True):
        assert abs(a["train_loss"] - b["train_loss"]) < 1e-4, (a, b)
        assert abs(a["val_loss"] - b["val_loss"]) < 1e-4, (a, b)
    assert abs(summary_one["test_accuracy"] - summary_two["test_accuracy"]) <= 1e-3
    assert summary_two["test_count"] == 10_000

    # Only process 0 wrote the checkpoints; they restore in a single process on one device.
    restored = subprocess.run(
        [sys.executable, "-c", RESTORE_AND_EVALUATE, str(two)],
        cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu"),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert restored.returncode == 0, restored.stderr[-3000:]
    out = json.loads(restored.stdout.strip().splitlines()[-1])
    assert (out["process_count"], out["devices"], out["count"]) == (1, 1, 10_000)
    assert out["accuracy"] == summary_two["test_accuracy"]


# Prints a sha256 of a run's best variables (restored in one process on one device).
DIGEST = """
import hashlib, sys
import jax, numpy as np
from mnist_jax.evaluation import runs

run = runs.open_run(sys.argv[1])
h = hashlib.sha256()
for leaf in jax.tree.leaves(runs.restore_best(run, runs.build_model(run.config))):
    h.update(np.ascontiguousarray(leaf).tobytes())
print(h.hexdigest())
"""


def _tree_flags() -> tuple[str, ...]:
    fraction, epochs = ("0.3", "2") if FULL else ("0.03", "1")
    return (f"--config.num_epochs={epochs}", f"--config.data.train_fraction={fraction}",
            "--config.parallel.reduction=tree",
            "--config.test_every_epochs=1")  # test metrics per epoch, compared too  # fmt: skip


@pytest.mark.determinism
@pytest.mark.slow
@pytest.mark.parametrize("config", ["configs/cnn.py", "configs/mlp.py"])
def test_tree_reduction_two_processes_of_two_devices_equal_one_of_four_bitwise(
    mnist_dir, tmp_path, config
):
    """The 'tree' reduction across processes: 2 processes x 2 devices (shard_map) and 1 process
    x 4 devices (pmap) give the same bits in every metric and every parameter, for a main config
    as it ships (augmentation, dropout; the CNN's weight average). MNIST_JAX_DETERMINISM=full:
    2 epochs on 30% of the data (docs/determinism.md). The default set compares 2x2 with 1, 2
    and 8 devices in one process (test_parallel.py's tree test, the CNN's case)."""
    one = tmp_path / "one"
    result = run_module(
        "mnist_jax.main", f"--config={config}", f"--workdir={one}", *_tree_flags(), devices=4
    )
    assert result.returncode == 0, result.stderr[-3000:]
    two = tmp_path / "two"
    train_two_processes(two, *_tree_flags(), config=config)
    numbers = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "test_loss",
               "test_accuracy")  # fmt: skip
    assert [[r[k] for k in numbers] for r in _metrics(one)] == [
        [r[k] for k in numbers] for r in _metrics(two)
    ]
    summaries = [json.loads((w / "summary.json").read_text()) for w in (one, two)]
    assert [(s["num_processes"], s["num_devices"]) for s in summaries] == [(1, 4), (2, 4)]
    assert summaries[0]["test_accuracy"] == summaries[1]["test_accuracy"] > 0.2  # trained
    digests = [
        subprocess.run(
            [sys.executable, "-c", DIGEST, str(w)], cwd=ROOT, capture_output=True, text=True,
            env=dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu"), timeout=300,
        ).stdout.strip()
        for w in (one, two)
    ]  # fmt: skip
    assert digests[0] and digests[0] == digests[1]


@pytest.mark.slow
def test_killing_one_process_stops_the_others_with_an_error(mnist_dir, tmp_path):
    """kill -9 of process 1 mid-training: process 0 exits non-zero with a clear message within
    the heartbeat timeout, instead of waiting in a collective forever."""
    heartbeat, port = 10, _free_port()
    env = dict(
        os.environ,
        PYTHONPATH=str(ROOT),
        JAX_PLATFORMS="cpu",
        XLA_FLAGS="--xla_force_host_platform_device_count=2",
        MNIST_JAX_COORDINATOR=f"localhost:{port}",
        MNIST_JAX_NUM_PROCESSES="2",
        MNIST_JAX_HEARTBEAT_TIMEOUT=str(heartbeat),
    )
    args = [sys.executable, "-m", "mnist_jax.main", "--config=configs/mlp.py",
            f"--workdir={tmp_path / 'run'}", "--config.num_epochs=50",
            "--config.data.train_fraction=0.2", "--config.steps_per_chunk=10"]  # fmt: skip
    with contextlib.ExitStack() as stack:
        logs = [stack.enter_context(open(tmp_path / f"process_{i}.log", "w")) for i in range(2)]
        procs = [
            subprocess.Popen(args, cwd=ROOT, env=dict(env, MNIST_JAX_PROCESS_ID=str(i)),
                             stdout=logs[i], stderr=subprocess.STDOUT)
            for i in range(2)
        ]  # fmt: skip
    try:
        # Once process 0 has compiled, it is training: blocked in collectives with process 1.
        deadline = time.monotonic() + 300
        while "Compiled" not in (tmp_path / "process_0.log").read_text():
            assert all(p.poll() is None for p in procs), (tmp_path / "process_0.log").read_text()
            assert time.monotonic() < deadline, "training did not start"
            time.sleep(0.2)
        procs[1].send_signal(signal.SIGKILL)
        killed = time.monotonic()
        rc = procs[0].wait(timeout=heartbeat + 30)
        seconds = time.monotonic() - killed
        print(f"process 0 exited with status {rc} {seconds:.1f} s after kill -9 of process 1")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    log0 = (tmp_path / "process_0.log").read_text()
    assert rc != 0
    assert seconds < heartbeat + 15, seconds
    assert (
        "in a multi-process run this usually means another process died" in log0
        or "JAX distributed service detected fatal errors" in log0
    ), log0[-3000:]


@pytest.mark.parametrize(
    "flags, message",
    [
        (("--num_processes=2",), "multi-process settings are incomplete"),
        (("--coordinator_address=localhost:1", "--num_processes=2", "--process_id=2"),
         "--process_id must be in 0..1"),
    ],
)  # fmt: skip
def test_bad_multiprocess_settings_are_a_one_line_error(tmp_path, flags, message):
    result = run_module(
        "mnist_jax.main", "--config=configs/mlp.py", f"--workdir={tmp_path}", *flags, timeout=120
    )
    assert result.returncode == 1
    assert message in result.stderr and "Traceback" not in result.stderr, result.stderr
