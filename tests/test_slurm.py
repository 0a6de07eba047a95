"""SLURM launches: the sbatch scripts as data, then real jobs on a local single-node SLURM
(tests/slurm_cluster.py): a 2-task training job, requeued mid-epoch, against an uninterrupted
`multiprocess 2`, and a study as a job array of workers with a final aggregating job.

The real-cluster tests need Debian's slurm-wlm and munge and root; without them they skip,
unless REQUIRE_SLURM=1 (set by .ci/run), where they fail.
"""

import json
import os
import shlex
import subprocess
import time
from pathlib import Path

import pytest
from conftest import ROOT, run_module, train_two_processes
from slurm_cluster import LocalCluster, missing_commands

from mnist_jax.core.errors import UserError
from mnist_jax.launcher import slurm
from mnist_jax.launcher.commands import Site

PY = "/venv/bin/python"
HOSTILE = 'it\'s a $HOME "dir"'  # a quote, a dollar, double quotes and spaces
SITE = Site(PY, ROOT, ROOT, {"MNIST_DIR": "/data/m nist"})


def directives(script: str) -> dict[str, str]:
    lines = [line.removeprefix("#SBATCH ") for line in script.splitlines()]
    pairs = [line.split("=", 1) if "=" in line else (line, "") for line in lines
             if line.startswith("--")]  # fmt: skip
    return dict(pairs)


def srun_line(script: str) -> list[str]:
    (line,) = [line for line in script.splitlines() if line.startswith("srun ")]
    return shlex.split(line.split(" && ")[0])


def test_gpu_job_asks_for_gpus_and_runs_one_process_per_gpu():
    job = slurm.SlurmJob(nodes=2, gpus_per_node=4, time="00:30:00", partition="gpu")
    script = slurm.training_script(SITE, job, "configs/cnn.py", "/shared/cnn", ["--config.x=1"])
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
    assert directives(script) == {
        "--job-name": "mnist_jax", "--nodes": "2", "--ntasks-per-node": "4",
        "--gpus-per-node": "4", "--cpus-per-task": "2", "--time": "00:30:00",
        "--signal": "TERM@120", "--requeue": "", "--open-mode": "append", "--partition": "gpu",
    }  # fmt: skip
    assert srun_line(script) == ["srun", "--kill-on-bad-exit=1", PY, "-u", "-m", "mnist_jax.main",
                                 "--config=configs/cnn.py", "--workdir=/shared/cnn",
                                 "--config.x=1"]  # fmt: skip
    assert "export MNIST_DIR='/data/m nist'" in script and "XLA_FLAGS" not in script


def test_cpu_job_asks_for_no_gpus_and_sets_the_simulated_devices():
    job = slurm.SlurmJob(tasks_per_node=2, cpu_devices=4, requeue=False, signal_seconds=0)
    script = slurm.training_script(SITE, job, "configs/mlp.py", "w", [])
    found = directives(script)
    assert "--gpus-per-node" not in found and "--signal" not in found
    assert found["--ntasks-per-node"] == "2" and "--no-requeue" in found
    assert "export XLA_FLAGS=--xla_force_host_platform_device_count=4" in script
    assert "export JAX_PLATFORMS=cpu" in script and "scontrol requeue" not in script


def _fake(path: Path, body: str) -> None:
    path.parent.mkdir(exist_ok=True)
    path.write_text(f"#!/usr/bin/env python3\n{body}")
    path.chmod(0o755)


def test_script_with_hostile_paths_requeues_itself_when_preempted(tmp_path):
    """The script itself, run by bash with an `srun` that records its arguments and exits 75
    (preempted after a checkpoint) and an `scontrol` that records its arguments."""
    cwd = tmp_path / HOSTILE
    cwd.mkdir()
    record = tmp_path / "calls.jsonl"
    call = "{'argv': sys.argv, 'cwd': os.getcwd(), 'MNIST_DIR': os.environ['MNIST_DIR']}"
    body = f"import json, os, sys\nopen({str(record)!r}, 'a').write(json.dumps({call}) + '\\n')\n"
    _fake(tmp_path / "bin" / "srun", body + "sys.exit(75)\n")
    _fake(tmp_path / "bin" / "scontrol", body)
    site = Site(PY, ROOT, cwd, {"MNIST_DIR": HOSTILE})
    overrides = ["--config.data.dir=$HOME `x`", "--config.mlp.hidden_sizes=(64, 64)"]
    script = slurm.training_script(site, slurm.SlurmJob(), HOSTILE + ".py", HOSTILE, overrides)
    env = dict(os.environ, PATH=f"{tmp_path / 'bin'}:{os.environ['PATH']}", SLURM_JOB_ID="42")
    assert subprocess.run(["bash", "-c", script], env=env, timeout=60).returncode == 0
    srun, scontrol = [json.loads(line) for line in record.read_text().splitlines()]
    assert srun["cwd"] == str(cwd) and srun["MNIST_DIR"] == HOSTILE
    assert srun["argv"][1:] == ["--kill-on-bad-exit=1", PY, "-u", "-m", "mnist_jax.main",
                                f"--config={HOSTILE}.py", f"--workdir={HOSTILE}",
                                *overrides]  # fmt: skip
    assert scontrol["argv"][1:] == ["requeue", "42"]


def test_study_scripts_are_an_array_of_workers_and_a_final_job():
    job = slurm.SlurmJob()
    args = ["--seeds=2", "--config.num_epochs=1"]
    worker = slurm.worker_script(SITE, job, "experiments/dropout.py", "/s/out", args, 3)
    final = slurm.final_script(SITE, job, "experiments/dropout.py", "/s/out", args)
    sweep = [PY, "-u", "-m", "mnist_jax.sweep", "--study=experiments/dropout.py",
             "--output_dir=/s/out", *args]  # fmt: skip
    assert srun_line(worker)[2:] == [*sweep, "--jobs=3", "--worker=$SLURM_ARRAY_TASK_ID"]
    assert srun_line(final)[2:] == sweep
    for script in (worker, final):
        assert directives(script)["--ntasks-per-node"] == "1"


@pytest.mark.parametrize(
    "options, message",
    [
        ({"time": "soon"}, "--time must look like"),
        ({"nodes": 0}, "--nodes must be a positive integer"),
        ({"gpus_per_node": -1}, "--gpus_per_node must be 0 or more"),
        ({"gpus_per_node": 2, "cpu_devices": 2}, "--cpu_devices=2 is for CPU-only jobs"),
        ({"time": "02:00", "signal_seconds": 120}, "--signal_seconds=120 is not shorter"),
        ({"job_name": "my job"}, "--job_name='my job'"),
        ({"partition": "gpu\n#SBATCH --x"}, "--partition="),
    ],
)
def test_bad_options_are_refused_before_anything_is_written(options, message):
    with pytest.raises(UserError, match=message):
        slurm.SlurmJob(**options)


@pytest.mark.parametrize(
    "limit, seconds",
    [("30", 1800), ("1:30", 90), ("01:00:00", 3600), ("2-3", 183600), ("1-00:00:01", 86401)],
)
def test_time_limit_seconds(limit, seconds):
    assert slurm.time_limit_seconds(limit) == seconds


def test_status_of_a_directory_without_jobs_is_one_line(tmp_path):
    result = run_module("mnist_jax.launch", "status", str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.strip() == (f"error: {tmp_path}: nothing was submitted to SLURM from "
                                     f"here ({tmp_path}/slurm_jobs.json not found)")  # fmt: skip


# --- A real SLURM on localhost -------------------------------------------------------------

real = pytest.mark.xdist_group("slurm")  # one cluster, on one worker


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    if missing := missing_commands():
        reason = (
            f"SLURM is not installed ({', '.join(missing)} missing): apt install slurm-wlm munge"
        )
        if os.environ.get("REQUIRE_SLURM"):
            pytest.fail(reason)
        pytest.skip(reason)
    local = LocalCluster(tmp_path_factory.mktemp("slurm"))
    local.start()
    yield local
    local.stop()


# 2 epochs of 3 chunks (21 steps of 128 images: one train program) with the tree reduction:
# the same bits on any process count.
FLAGS = ("--config.num_epochs=2", "--config.data.train_fraction=0.05",
         "--config.mlp.hidden_sizes=(128, 128)", "--config.parallel.reduction=tree",
         "--config.test_every_epochs=1", "--config.steps_per_chunk=7")  # fmt: skip
NUMBERS = ("epoch", "train_loss", "val_loss", "val_accuracy", "test_loss", "test_accuracy")


def metrics(workdir: Path, keys: tuple[str, ...] = NUMBERS) -> list[list[float]]:
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return [[row[k] for k in keys] for row in rows if "train_loss" in row]


def submit(cluster: LocalCluster, workdir: Path, *options: str, **env: str) -> str:
    result = run_module("mnist_jax.launch", "slurm", "configs/mlp.py", str(workdir),
                        "--tasks_per_node=2", "--cpu_devices=2", "--cpus_per_task=1",
                        "--time=00:10:00", "--signal_seconds=60", *options, *FLAGS,
                        SLURM_CONF=str(cluster.conf), **env)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.split("Submitted job ")[1].split(";")[0]


def finished(cluster: LocalCluster, job_id: str, workdir: Path, timeout: float = 300) -> dict:
    job = cluster.wait(job_id, ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"), timeout)
    log = (workdir / f"slurm-{job_id}.out").read_text()
    assert job.get("JobState") == "COMPLETED", (job, log[-3000:])
    return job


@pytest.fixture(scope="module")
def multiprocess_run(mnist_dir, tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("multiprocess") / "run"
    train_two_processes(workdir, *FLAGS)
    return workdir


@real
def test_a_requeued_2_task_job_runs_every_epoch_once_to_the_bits_of_multiprocess_2(
    cluster, multiprocess_run, tmp_path
):
    """A 2-task job (2 CPU devices each, jax.distributed through SLURM's environment), requeued
    by `scontrol requeue` in its second epoch, where the test hook (faults.py) holds both tasks
    in their fifth chunk: SIGTERM reaches them, they checkpoint mid-epoch and exit 75; the job
    starts again and resumes there (its processes never reach a fifth chunk). It ends with the
    bits of `launch.sh multiprocess 2` on the same devices, and `status` reports it."""
    workdir = tmp_path / "run"
    job_id = submit(cluster, workdir, MNIST_JAX_TEST_FAULT="pause=60@chunk:5")
    log, deadline = workdir / f"slurm-{job_id}.out", time.monotonic() + 240
    while not log.exists() or "test hook: pid" not in log.read_text():
        assert time.monotonic() < deadline, cluster.job(job_id)
        time.sleep(0.2)
    assert cluster.run("scontrol", "requeue", job_id).returncode == 0
    cluster.wait(job_id, ("PENDING",), 120)
    cluster.start_now(job_id)
    job = finished(cluster, job_id, workdir)
    assert job["Restarts"] == "1"
    log = (workdir / f"slurm-{job_id}.out").read_text()
    assert "stopped by SIGTERM: checkpoint saved at epoch 2, after chunk 2 of 3" in log, log[-3000:]
    assert metrics(workdir) == metrics(multiprocess_run)  # epochs 1 and 2, once each
    summary = json.loads((workdir / "summary.json").read_text())
    assert (summary["num_processes"], summary["num_devices"]) == (2, 4)
    assert len(metrics(workdir)) == 2 and summary["test_accuracy"] > 0.8
    status = run_module("mnist_jax.launch", "status", str(workdir), SLURM_CONF=str(cluster.conf))
    assert status.returncode == 0, status.stderr
    assert f"job {job_id} (train): COMPLETED, exit 0:0 after " in status.stdout
    assert str(workdir / f"slurm-{job_id}.out") in status.stdout


STUDY = """
from mnist_jax.studies.study import Study

def get_study(variant=""):
    return Study(bases={"mlp": "configs/mlp.py"}, axes=[{"mlp.dropout": [0.0, 0.3]}],
                 seeds=[0, 1], overrides={"num_epochs": 1, "data.train_fraction": 0.05,
                                          "mlp.hidden_sizes": (128, 128)})
"""


def trial_numbers(output_dir: Path) -> dict[str, list]:
    return {
        run.name: [
            *metrics(run, NUMBERS[:4]),
            json.loads((run / "summary.json").read_text())["test_accuracy"],
        ]
        for run in sorted((output_dir / "trials").iterdir())
    }


@real
def test_a_study_on_a_job_array_matches_one_process_and_survives_a_killed_task(
    cluster, mnist_dir, tmp_path
):
    """4 trials on a 2-task worker array; task 1 is cancelled (scancel) in its first trial, held
    there by the test hook (faults.py; every worker pauses 4 s in its first chunk): it saves a
    mid-epoch checkpoint and exits, and task 0 or the final job (afterany) resumes that trial.
    The final job aggregates: the same numbers as one process; `status` shows the cancelled
    task's last log lines."""
    spec = tmp_path / "study.py"
    spec.write_text(STUDY)
    one, array = tmp_path / "one", tmp_path / "array"
    result = run_module("mnist_jax.sweep", f"--study={spec}", f"--output_dir={one}")
    assert result.returncode == 0, result.stderr[-2000:]
    result = run_module("mnist_jax.sweep", f"--study={spec}", f"--output_dir={array}", "--slurm",
                        "--workers=2", "--cpus_per_task=1", "--time=00:10:00",
                        "--signal_seconds=60", SLURM_CONF=str(cluster.conf),
                        MNIST_JAX_TEST_FAULT="pause=4@chunk:1")  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    words = result.stdout.split()
    array_id = words[words.index("array") + 1]
    final_id = words[words.index("job", words.index("array")) + 1]
    task_log, deadline = array / "logs" / f"slurm-{array_id}_1.out", time.monotonic() + 120
    while not task_log.exists() or "test hook: pid" not in task_log.read_text():  # mid-trial
        assert time.monotonic() < deadline, cluster.job(f"{array_id}_1")
        time.sleep(0.1)
    assert cluster.run("scancel", f"{array_id}_1").returncode == 0
    final = cluster.wait(final_id, ("COMPLETED", "FAILED", "CANCELLED"), 300)
    log = (array / "logs" / f"slurm-{final_id}.out").read_text()
    assert final["JobState"] == "COMPLETED", log[-3000:]
    assert trial_numbers(array) == trial_numbers(one) and len(trial_numbers(one)) == 4
    rows = [json.loads((d / "results.json").read_text())["rows"] for d in (one, array)]
    assert [r["test_accuracy_mean"] for r in rows[0]] == [r["test_accuracy_mean"] for r in rows[1]]
    status = run_module("mnist_jax.launch", "status", str(array), SLURM_CONF=str(cluster.conf))
    assert f"job {array_id}_1 (workers): CANCELLED" in status.stdout, status.stdout
    assert "    | preempted: stopped by SIGTERM: checkpoint saved at epoch 1" in status.stdout
    assert f"job {final_id} (final): COMPLETED" in status.stdout


@real
@pytest.mark.slow
def test_a_job_at_its_time_limit_checkpoints_requeues_itself_and_finishes(
    cluster, multiprocess_run, tmp_path
):
    """--time=2 (minutes) with SIGTERM 100 s before the limit: each start pauses in its third
    chunk (the test hook) until SLURM's signal arrives, checkpoints, exits 75 and requeues the
    job, until the run is done: every epoch once, the bits of an uninterrupted run."""
    workdir = tmp_path / "run"
    result = run_module("mnist_jax.launch", "slurm", "configs/mlp.py", str(workdir),
                        "--tasks_per_node=2", "--cpu_devices=2", "--cpus_per_task=1",
                        "--time=2", "--signal_seconds=100", *FLAGS, SLURM_CONF=str(cluster.conf),
                        MNIST_JAX_TEST_FAULT="pause=600@chunk:3")  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    job_id = result.stdout.split("Submitted job ")[1].split(";")[0]
    deadline = time.monotonic() + 900
    while (job := cluster.job(job_id)).get("JobState") != "COMPLETED":
        assert job.get("JobState") in ("RUNNING", "PENDING", "REQUEUED", "COMPLETING"), job
        assert time.monotonic() < deadline, job
        if job.get("JobState") == "PENDING" and job.get("Reason") == "BeginTime":
            cluster.start_now(job_id)
        time.sleep(1)
    assert int(job["Restarts"]) >= 1
    log = (workdir / f"slurm-{job_id}.out").read_text()
    assert "mnist_jax: preempted; requeueing job" in log, log[-3000:]
    assert metrics(workdir) == metrics(multiprocess_run)
