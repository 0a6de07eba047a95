"""launch.sh: --help and --dry_run of the local, multiprocess, slurm and tpu launches.

The dry runs print the commands a launch would run; these tests parse them as a shell would.
(The real multi-process launch is run in test_multihost.py.)
"""

import os
import shlex
import subprocess
import sys

import pytest
from conftest import ROOT


def launch(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, SKIP_SETUP="1", VENV=sys.prefix, MNIST_DIR="/data/mnist")
    return subprocess.run(
        ["./launch.sh", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def bash_syntax_ok(script: str) -> bool:
    return subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0


def main_args(argv: list[str]) -> list[str]:
    """The arguments after `python -m mnist_jax.main` in a command line."""
    i = argv.index("mnist_jax.main")
    python = argv[i - 3] if argv[i - 2] == "-u" else argv[i - 2]
    assert argv[i - 1] == "-m" and python.endswith("python"), argv
    return argv[i + 1 :]


@pytest.mark.parametrize("cmd", ["local", "multiprocess", "slurm", "tpu"])
def test_help(cmd):
    result = launch(cmd, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith(f"usage: ./launch.sh {cmd}")
    assert "--dry_run" in result.stderr and "e.g. ./launch.sh" in result.stderr


def test_top_level_help_lists_the_launches():
    out = launch("help").stdout
    for cmd in ("local", "multiprocess N", "slurm", "tpu"):
        assert f"./launch.sh {cmd}" in out


def test_local_dry_run():
    result = launch("local", "configs/mlp.py", "runs/m", "--cpu_devices=4", "--dry_run",
                    "--config.num_epochs=3")  # fmt: skip
    assert result.returncode == 0, result.stderr
    argv = shlex.split(result.stdout)
    assert "XLA_FLAGS=--xla_force_host_platform_device_count=4" in argv
    assert main_args(argv) == ["--config=configs/mlp.py", "--workdir=runs/m",
                               "--config.num_epochs=3"]  # fmt: skip


def test_multiprocess_dry_run():
    result = launch("multiprocess", "3", "configs/mlp.py", "runs/m", "--dry_run",
                    "--port=1234", "--cpu_devices=2", "--heartbeat_timeout=15",
                    "--config.num_epochs=3")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert bash_syntax_ok(result.stdout)
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "export MNIST_JAX_HEARTBEAT_TIMEOUT=15"
    assert lines[-1] == "wait"
    procs = [shlex.split(line) for line in lines if "mnist_jax.main" in line]
    assert len(procs) == 3
    for i, argv in enumerate(procs):
        assert argv[-1] == "&"
        assert f"MNIST_JAX_PROCESS_ID={i}" in argv
        assert "MNIST_JAX_NUM_PROCESSES=3" in argv
        assert "MNIST_JAX_COORDINATOR=localhost:1234" in argv
        assert "XLA_FLAGS=--xla_force_host_platform_device_count=2" in argv
        assert main_args(argv)[:3] == ["--config=configs/mlp.py", "--workdir=runs/m",
                                       "--config.num_epochs=3"]  # fmt: skip
    assert procs[1][-4:-1] == [">", "runs/m/logs/process_1.log", "2>&1"]


def test_slurm_dry_run_prints_an_sbatch_script():
    result = launch("slurm", "configs/cnn.py", "/shared/runs/cnn", "--nodes=2",
                    "--gpus_per_node", "4", "--time=00:30:00", "--partition=gpu", "--dry_run",
                    "--config.mlp.hidden_sizes=(64,64)")  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "# /shared/runs/cnn/slurm_job.sbatch"
    assert shlex.split(lines[-1]) == ["sbatch", "/shared/runs/cnn/slurm_job.sbatch"]
    script = lines[1 : lines.index("# submit with:")]
    assert script[0] == "#!/bin/bash" and bash_syntax_ok("\n".join(script))
    sbatch = dict(line.removeprefix("#SBATCH ").split("=", 1) for line in script
                  if line.startswith("#SBATCH "))  # fmt: skip
    assert sbatch["--nodes"] == "2"
    assert sbatch["--ntasks-per-node"] == sbatch["--gpus-per-node"] == "4"  # one per GPU
    assert sbatch["--time"] == "00:30:00" and sbatch["--partition"] == "gpu"
    assert sbatch["--output"] == "/shared/runs/cnn/slurm-%j.out"
    (srun,) = [shlex.split(line) for line in script if line.startswith("srun ")]
    assert "--kill-on-bad-exit=1" in srun
    assert main_args(srun) == ["--config=configs/cnn.py", "--workdir=/shared/runs/cnn",
                               "--config.mlp.hidden_sizes=(64,64)"]  # fmt: skip
    assert "export MNIST_DIR=/data/mnist" in script


def test_tpu_dry_run_prints_gcloud_commands():
    result = launch("tpu", "configs/cnn.py", "/mnt/nfs/runs/cnn", "--name=pod", "--zone=z1",
                    "--project=p", "--dry_run", "--config.mlp.hidden_sizes=(64,64)")  # fmt: skip
    assert result.returncode == 0, result.stderr
    archive, scp, ssh = (shlex.split(line) for line in result.stdout.strip().splitlines())
    assert archive[:2] == ["git", "archive"]
    tarball = archive[archive.index("-o") + 1]
    assert scp[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "scp"]
    assert scp[5:7] == [tarball, "pod:~/"] and "--worker=all" in scp and "--zone=z1" in scp
    assert ssh[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "pod"]
    assert {"--worker=all", "--zone=z1", "--project=p"} <= set(ssh)
    (command,) = [a.removeprefix("--command=") for a in ssh if a.startswith("--command=")]
    assert bash_syntax_ok(command)
    remote = shlex.split(command)
    assert f"~/{os.path.basename(tarball)}" in remote  # unpacks what scp copied
    assert "./launch.sh" in remote and "jax[tpu]==$(.venv/bin/python" in command
    assert "MNIST_JAX_DISTRIBUTED=on" in remote
    assert main_args(remote) == ["--config=configs/cnn.py", "--workdir=/mnt/nfs/runs/cnn",
                                 "--config.mlp.hidden_sizes=(64,64)"]  # fmt: skip


def test_tpu_no_copy_runs_only_ssh():
    result = launch("tpu", "c.py", "w", "--name=pod", "--zone=z", "--no_copy", "--dry_run")
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.strip().splitlines()
    assert "tpu-vm ssh" in line and "tar -xzf" not in line


@pytest.mark.parametrize(
    "args, message",
    [
        (("tpu", "c.py", "w", "--dry_run"), "--name=TPU and --zone=ZONE"),
        (("multiprocess", "two", "c.py", "w"), "positive integer, got 'two'"),
        (("multiprocess", "2", "c.py", "w", "--cpu_devices=0"), "--cpu_devices"),
        (("slurm", "c.py", "w", "--time=soon", "--dry_run"), "--time must look like"),
        (("slurm", "c.py", "w", "--nodes=0", "--dry_run"), "--nodes"),
        (("slurm", "c.py"), "usage: ./launch.sh slurm"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(args, message):
    result = launch(*args)
    assert result.returncode == 2
    assert message in result.stderr
