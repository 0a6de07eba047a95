"""SLURM jobs: the sbatch scripts of a training run and of a study's workers, their submission,
and the record that `launch.sh status` reads back.

A training job runs one process per task under `srun` (jax.distributed reads the SLURM_*
variables); a study is a job array of workers that share the trial queue through the run
directories' locks, plus one job that waits for the array (`--dependency=afterany`), trains any
trial a worker left unfinished and aggregates. Every job asks SLURM for SIGTERM
`signal_seconds` before its time limit (`--signal`): the processes checkpoint and exit 75, and
the script requeues the job (`scontrol requeue`), which then resumes from that checkpoint.
`scontrol requeue` by hand (or a preemption) sends the same SIGTERM. GPUs are asked for (GRES)
only when `gpus_per_node` > 0; CPU-only clusters run `cpu_devices` simulated devices per task.
"""

import dataclasses
import datetime
import json
import re
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from mnist_jax.core import cli
from mnist_jax.core.errors import UserError
from mnist_jax.launcher.commands import Site, cpu_devices_env

RECORD = "slurm_jobs.json"  # in the run or study directory: what was submitted, and its logs
_TIME = re.compile(r"^(\d+-\d+(:\d{2}){0,2}|\d+(:\d{2}){0,2})$")
_DIRECTIVE = re.compile(r"^[\w.,:+@%-]+$")  # a value an #SBATCH line carries unquoted


def time_limit_seconds(limit: str) -> int:
    """sbatch's --time (MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS) in seconds."""
    days, _, rest = limit.rpartition("-")
    parts = [int(p) for p in rest.split(":")]
    if days:  # after a day count: hours first
        parts += [0] * (3 - len(parts))
        return int(days) * 86400 + parts[0] * 3600 + parts[1] * 60 + parts[2]
    units = {1: (60,), 2: (60, 1), 3: (3600, 60, 1)}[len(parts)]
    return sum(p * u for p, u in zip(parts, units, strict=True))


@dataclasses.dataclass(frozen=True)
class SlurmJob:
    """The resources of a job: `nodes` x `tasks_per_node` processes (default: one per GPU, or
    one per node without GPUs), each with `cpus_per_task` CPUs and, without GPUs,
    `cpu_devices` simulated JAX devices."""

    nodes: int = 1
    gpus_per_node: int = 0
    tasks_per_node: int | None = None
    cpus_per_task: int = 2
    cpu_devices: int | None = None
    time: str = "01:00:00"
    partition: str = ""
    account: str = ""
    job_name: str = "mnist_jax"
    heartbeat_timeout: int = 120
    signal_seconds: int = 120
    requeue: bool = True

    def __post_init__(self):
        positive = ["nodes", "cpus_per_task", "heartbeat_timeout"]
        positive += [n for n in ("tasks_per_node", "cpu_devices") if getattr(self, n) is not None]
        for name in positive:
            if getattr(self, name) < 1:
                raise UserError(f"--{name} must be a positive integer, got {getattr(self, name)}")
        for name in ("gpus_per_node", "signal_seconds"):
            if getattr(self, name) < 0:
                raise UserError(f"--{name} must be 0 or more, got {getattr(self, name)}")
        if self.gpus_per_node and self.cpu_devices:
            raise UserError(
                f"--cpu_devices={self.cpu_devices} is for CPU-only jobs; with "
                f"--gpus_per_node={self.gpus_per_node} each task uses its GPU"
            )
        if not _TIME.match(self.time):
            raise UserError(f"--time must look like HH:MM:SS, MM or D-HH:MM:SS, got {self.time!r}")
        if self.signal_seconds and self.signal_seconds >= time_limit_seconds(self.time):
            raise UserError(
                f"--signal_seconds={self.signal_seconds} is not shorter than --time={self.time}; "
                "give it a fraction of the limit (e.g. 120 of 01:00:00), or 0 for no signal"
            )
        for name in ("partition", "account", "job_name"):  # sbatch reads #SBATCH lines unquoted
            value = getattr(self, name)
            if value and not _DIRECTIVE.match(value):
                raise UserError(
                    f"--{name}={value!r}: use letters, digits and . , : + @ % - _ only "
                    "(the value goes on an #SBATCH line)"
                )

    @property
    def tasks(self) -> int:
        """Processes per node."""
        return self.tasks_per_node or self.gpus_per_node or 1

    def directives(self) -> list[str]:
        lines = [f"--job-name={self.job_name}", f"--nodes={self.nodes}",
                 f"--ntasks-per-node={self.tasks}"]  # fmt: skip
        lines += [f"--gpus-per-node={self.gpus_per_node}"] if self.gpus_per_node else []
        lines += [f"--cpus-per-task={self.cpus_per_task}", f"--time={self.time}"]
        lines += [f"--signal=TERM@{self.signal_seconds}"] if self.signal_seconds else []
        lines += ["--requeue" if self.requeue else "--no-requeue", "--open-mode=append"]
        lines += [f"--partition={self.partition}"] if self.partition else []
        lines += [f"--account={self.account}"] if self.account else []
        return [f"#SBATCH {line}" for line in lines]

    def environment(self, site: Site) -> dict[str, str]:
        env = site.python_path()
        if site.environ.get("MNIST_DIR"):
            env["MNIST_DIR"] = site.environ["MNIST_DIR"]
        if not self.gpus_per_node:
            env |= cpu_devices_env(site, self.cpu_devices or 1)
        env["MNIST_JAX_HEARTBEAT_TIMEOUT"] = str(self.heartbeat_timeout)
        return env


def _script(
    site: Site, job: SlurmJob, argv: Sequence[str], comment: str, shell_tail: str = ""
) -> str:
    """`srun argv` (then `shell_tail`, unquoted shell) in a job that requeues itself when the
    processes exit 75 (preempted after a checkpoint), so that it resumes; any other status is
    the job's."""
    lines = ["#!/bin/bash", *job.directives(), f"# {comment}",
             "# Its log: sbatch --output, appended over requeues ('launch.sh status DIR').",
             f"cd {shlex.quote(str(site.cwd))}"]  # fmt: skip
    lines += [f"export {k}={shlex.quote(v)}" for k, v in job.environment(site).items()]
    lines += [
        'echo "mnist_jax: job $SLURM_JOB_ID, start ${SLURM_RESTART_COUNT:-0} (0: first)"',
        f"srun --kill-on-bad-exit=1 {shlex.join(argv)}{shell_tail} && status=0 || status=$?",
    ]
    if job.requeue:
        lines += [
            f"if [[ $status == {cli.EXIT_PREEMPTED} ]]; then  # checkpoint saved: resume",
            '  echo "mnist_jax: preempted; requeueing job $SLURM_JOB_ID to resume" >&2',
            '  scontrol requeue "$SLURM_JOB_ID" && exit 0',
            "fi",
        ]
    lines.append("exit $status")
    return "\n".join(lines) + "\n"


def training_script(
    site: Site, job: SlurmJob, config: str, workdir: str, overrides: Sequence[str]
) -> str:
    """One training run: `nodes` x `tasks` processes of mnist_jax.main, started by srun."""
    argv = (site.python, "-u", "-m", "mnist_jax.main", f"--config={config}",
            f"--workdir={workdir}", *overrides)  # fmt: skip
    return _script(site, job, argv, "One process per task; jax.distributed reads SLURM_*.")


def _one_process(job: SlurmJob) -> SlurmJob:
    """A study's jobs are single processes: one task on one node."""
    return dataclasses.replace(job, nodes=1, tasks_per_node=1)


def worker_script(
    site: Site, job: SlurmJob, study: str, output_dir: str, args: Sequence[str], workers: int
) -> str:
    """Array task k of `workers`: `sweep --jobs=workers --worker=k`, one process."""
    argv = (site.python, "-u", "-m", "mnist_jax.sweep", f"--study={study}",
            f"--output_dir={output_dir}", *args, f"--jobs={workers}")  # fmt: skip
    comment = "A study worker: trains the trials that no other worker holds."
    tail = ' --worker="$SLURM_ARRAY_TASK_ID"'
    return _script(site, _one_process(job), argv, comment, tail)


def final_script(
    site: Site, job: SlurmJob, study: str, output_dir: str, args: Sequence[str]
) -> str:
    """After the array: the sweep once more, which trains what no worker finished and writes
    the results (or the evaluation)."""
    argv = (site.python, "-u", "-m", "mnist_jax.sweep", f"--study={study}",
            f"--output_dir={output_dir}", *args)  # fmt: skip
    comment = "After the workers: finish any trial left, then aggregate."
    return _script(site, _one_process(job), argv, comment)


def sbatch(script: Path, log: str, *extra: str) -> list[str]:
    """Submits `script`; the log path goes here, not on an #SBATCH line, as it may hold spaces."""
    return ["sbatch", "--parsable", f"--output={log}", *extra, str(script)]


def _submit(argv: list[str]) -> str:
    if shutil.which("sbatch") is None:
        raise UserError("sbatch not found: submit from a SLURM login node (or use --dry_run)")
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        message = (result.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise UserError(f"sbatch refused the job: {message}")
    return result.stdout.strip().split(";")[0]  # --parsable: "jobid[;cluster]"


def _record(directory: Path, kind: str, job_id: str, script: Path, log: str) -> None:
    path = directory / RECORD
    jobs = json.loads(path.read_text()) if path.exists() else []
    jobs.append({"job_id": job_id, "kind": kind, "script": str(script), "log": log,
                 "submitted": datetime.datetime.now().isoformat(timespec="seconds")})  # fmt: skip
    path.write_text(json.dumps(jobs, indent=2) + "\n")


def submit_training(directory: Path, script: str, *, dry_run: bool = False) -> str:
    """Writes DIR/slurm_job.sbatch and submits it; returns the job id ('' for a dry run)."""
    path, log = directory / "slurm_job.sbatch", str(directory / "slurm-%j.out")
    if dry_run:
        print(f"# {path}\n{script}# submit with:\n{shlex.join(sbatch(path, log))}")
        return ""
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text(script)
    job_id = _submit(sbatch(path, log))
    _record(directory, "train", job_id, path, log.replace("%j", job_id))
    return job_id


def submit_study(
    directory: Path, workers: int, worker: str, final: str, *, dry_run: bool = False
) -> tuple[str, str]:
    """The worker array (tasks 0..workers-1) and the final job after it; their job ids."""
    logs = directory / "logs"
    paths = logs / "slurm_workers.sbatch", logs / "slurm_final.sbatch"
    worker_log, final_log = str(logs / "slurm-%A_%a.out"), str(logs / "slurm-%j.out")
    array = sbatch(paths[0], worker_log, f"--array=0-{workers - 1}")
    if dry_run:
        after = sbatch(paths[1], final_log, "--dependency=afterany:<array job id>")
        print(f"# {paths[0]}\n{worker}# {paths[1]}\n{final}# submit with:")
        print(f"{shlex.join(array)}\n{shlex.join(after)}")
        return "", ""
    logs.mkdir(parents=True, exist_ok=True)
    paths[0].write_text(worker)
    paths[1].write_text(final)
    array_id = _submit(array)
    _record(directory, "workers", array_id, paths[0], worker_log.replace("%A", array_id))
    final_id = _submit(sbatch(paths[1], final_log, f"--dependency=afterany:{array_id}"))
    _record(directory, "final", final_id, paths[1], final_log.replace("%j", final_id))
    return array_id, final_id


_FAILED = ("FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "CANCELLED", "BOOT_FAIL", "DEADLINE")


def _controller_tasks(job_id: str) -> list[dict[str, str]]:
    """The job's (or array's) tasks as the controller knows them; [] once it has forgotten."""
    out = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True)
    if out.returncode != 0:
        return []
    return [dict(re.findall(r"(\w+)=(\S*)", line)) for line in out.stdout.splitlines() if line]


def _accounting_tasks(job_id: str) -> list[dict[str, str]]:
    """The same from accounting (sacct), for jobs the controller no longer holds."""
    if shutil.which("sacct") is None:
        return []
    fields = ["JobId", "JobState", "ExitCode", "RunTime"]
    argv = ["sacct", "-n", "-P", "-X", "-j", job_id, "-o", "JobID,State,ExitCode,Elapsed"]
    out = subprocess.run(argv, capture_output=True, text=True)
    rows = [line.split("|") for line in out.stdout.splitlines()] if out.returncode == 0 else []
    return [dict(zip(fields, row, strict=False)) for row in rows if len(row) == len(fields)]


def _log_tail(path: str, lines: int = 8) -> list[str]:
    try:
        return Path(path).read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return [f"(cannot read {path})"]


def status(directory: Path) -> str:
    """What was submitted from DIR (launch.sh slurm, sweep --slurm): each job's or array
    task's state, exit code and log, and the last lines of the log of every failed one."""
    path = directory / RECORD
    if not path.is_file():
        raise UserError(f"{directory}: nothing was submitted to SLURM from here ({path} not found)")
    if shutil.which("scontrol") is None:
        raise UserError("scontrol not found: run this where SLURM's commands are")
    lines = []
    for record in json.loads(path.read_text()):
        tasks = _controller_tasks(record["job_id"]) or _accounting_tasks(record["job_id"])
        if not tasks:
            lines.append(f"job {record['job_id']} ({record['kind']}): no longer known to SLURM "
                         f"(past MinJobAge, no accounting); log {record['log']}")  # fmt: skip
            continue
        for t in tasks:
            task = t.get("ArrayTaskId")
            name = f"{t.get('ArrayJobId', record['job_id'])}_{task}" if task else t["JobId"]
            log = t.get("StdOut") or record["log"].replace("%a", task or "")
            state = t.get("JobState", "?")
            reason = f" ({t['Reason']})" if t.get("Reason", "None") != "None" else ""
            ran = t.get("RunTime", "?")
            if state in ("PENDING", "REQUEUED"):
                what = f"{state}{reason}"
            elif state in ("RUNNING", "COMPLETING", "SUSPENDED"):
                what = f"{state} for {ran}"
            else:
                what = f"{state}{reason}, exit {t.get('ExitCode', '?')} after {ran}"
            lines.append(f"job {name} ({record['kind']}): {what}; log {log}")
            if state in _FAILED:
                lines += [f"    | {line}" for line in _log_tail(log)]
    return "\n".join(lines)
