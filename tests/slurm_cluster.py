"""A real single-node SLURM on localhost for the tests: munged, slurmctld and slurmd started from
a generated slurm.conf (a CPU-only node with this machine's CPUs; key, state, spool and logs
under one temporary directory; free ports), and stopped afterwards. Needs Debian's `slurm-wlm`
and `munge` and root (slurmd starts the jobs' processes as the submitting user).
"""

import contextlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "sinfo")


def missing_commands() -> list[str]:
    return [c for c in DAEMONS if shutil.which(c) is None]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


class LocalCluster:
    """`env` is what a client command needs (SLURM_CONF); `run` runs one with it."""

    def __init__(self, directory: Path):
        self.dir = directory
        self.conf = directory / "slurm.conf"
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))

    def _config(self) -> str:
        d, node = self.dir, socket.gethostname().split(".")[0]
        return "\n".join([
            "ClusterName=mnistjax", f"SlurmctldHost={node}",
            "AuthType=auth/munge", "CredType=cred/munge", f"AuthInfo=socket={d}/munge.sock",
            "SlurmUser=root", "SlurmdUser=root",
            f"SlurmctldPort={_free_port()}", f"SlurmdPort={_free_port()}",
            f"StateSaveLocation={d}/state", f"SlurmdSpoolDir={d}/spool",
            f"SlurmctldPidFile={d}/slurmctld.pid", f"SlurmdPidFile={d}/slurmd.pid",
            f"SlurmctldLogFile={d}/slurmctld.log", f"SlurmdLogFile={d}/slurmd.log",
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_CPU",
            "MpiDefault=none", "ReturnToService=2", "SwitchType=switch/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "MinJobAge=600", "KillWait=30", "InactiveLimit=0",
            f"NodeName={node} CPUs={os.cpu_count()} State=UNKNOWN",
            "PartitionName=local Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
        ]) + "\n"  # fmt: skip

    def start(self, timeout: float = 60) -> None:
        for sub in ("state", "spool"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        key = self.dir / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        self.conf.write_text(self._config())
        d = self.dir
        subprocess.run(["munged", "--force", f"--socket={d}/munge.sock", f"--key-file={key}",
                        f"--log-file={d}/munged.log", f"--pid-file={d}/munged.pid",
                        f"--seed-file={d}/munged.seed"], check=True)  # fmt: skip
        subprocess.run(["slurmctld", "-f", str(self.conf), "-i"], env=self.env, check=True)
        subprocess.run(["slurmd", "-f", str(self.conf)], env=self.env, check=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.run("sinfo", "-h", "-o", "%T").stdout.strip()
            if state == "idle":
                return
            time.sleep(0.5)
        raise RuntimeError(f"the local SLURM node is not idle after {timeout} s: {state!r}; "
                           f"see {d}/slurmctld.log and {d}/slurmd.log")  # fmt: skip

    def run(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=timeout)

    def job(self, job_id: str) -> dict[str, str]:
        """The controller's fields of one job (JobState, ExitCode, Restarts, ...)."""
        out = self.run("scontrol", "show", "job", "-o", job_id).stdout
        return dict(item.split("=", 1) for item in out.split() if "=" in item)

    def wait(self, job_id: str, states: tuple[str, ...], timeout: float) -> dict[str, str]:
        """Waits until the job is in one of `states`; its fields."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job.get("JobState") in states or time.monotonic() > deadline:
                return job
            time.sleep(1)

    def start_now(self, job_id: str) -> None:
        """SLURM holds a requeued job for about two minutes (its BeginTime); start it now."""
        self.run("scontrol", "update", f"JobId={job_id}", "StartTime=now")

    def stop(self) -> None:
        self.run("scancel", "--full", "--user=root")
        self.run("scontrol", "shutdown")
        time.sleep(1)
        for pid_file in ("slurmd.pid", "slurmctld.pid", "munged.pid"):
            with contextlib.suppress(OSError, ValueError):
                os.kill(int((self.dir / pid_file).read_text()), 15)
