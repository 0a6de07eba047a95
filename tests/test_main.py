"""The training binary end to end, as a user runs it: real data, real processes."""

import json
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, run_module


def test_mlp_trains_from_the_command_line(tmp_path, mnist_dir):
    workdir = tmp_path / "mlp"
    out = run_module(
        "mnist_jax.main", "--config=configs/mlp.py", f"--workdir={workdir}",
        "--config.num_epochs=1", "--config.data.train_fraction=0.3",
        "--config.steps_per_chunk=14",  # 126 steps: 9 chunks of 14, one program to compile
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["test_accuracy"] >= 0.94 and summary["test_count"] == 10_000  # measured 95.49%
    assert summary["epochs_run"] == 1 and summary["model"] == "mlp"
    assert "img/s" in out.stderr and "Test accuracy" in out.stderr


@pytest.mark.parametrize(
    ("args", "devices", "message"),
    [
        (
            ["--config.model=transformer"],
            1,
            "unknown model 'transformer'; valid: cnn, cnn_nnx, hybrid",
        ),
        (["--config.batch_size=100"], 8, "batch_size=100 cannot be split evenly over 8 devices"),
        (["--config.data.dir=/no/such/mnist"], 1, "/no/such/mnist"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(tmp_path, mnist_dir, args, devices, message):
    out = run_module(
        "mnist_jax.main", "--config=configs/mlp.py", f"--workdir={tmp_path / 'run'}", *args,
        devices=devices,
    )  # fmt: skip
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], out.stderr[-2000:]


def test_help_names_the_flags():
    out = run_module("mnist_jax.main", "--help")
    assert out.returncode == 0
    for text in ("--config", "--workdir", "--config.num_epochs", "resumes"):
        assert text in out.stdout


@pytest.mark.slow  # test_faults.py kills runs at five moments and checks the rerun's bits
def test_sigkill_after_first_checkpoint_then_rerun_completes(tmp_path, mnist_dir):
    workdir = tmp_path / "run"
    command = [
        sys.executable, "-m", "mnist_jax.main", "--config=configs/mlp.py",
        f"--workdir={workdir}", "--config.num_epochs=3", "--config.data.train_fraction=0.1",
    ]  # fmt: skip
    victim = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300

    def checkpointed() -> bool:
        return any(p.name.isdigit() for p in (workdir / "checkpoints").glob("*"))

    while not checkpointed() and victim.poll() is None:
        assert time.time() < deadline, "no checkpoint within 300 s"
        time.sleep(0.2)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert not (workdir / "summary.json").exists()

    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Resuming" in out.stderr
    epochs = [json.loads(line)["epoch"] for line in (workdir / "metrics.jsonl").open()]
    assert epochs == [1, 2, 3]
    assert json.loads((workdir / "summary.json").read_text())["epochs_run"] == 3
