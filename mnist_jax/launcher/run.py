"""What each launcher subcommand does with its parsed arguments: build its commands
(commands.py), then print them (--dry_run), or run them (supervisor.py), or submit them.
"""

import os
import shlex
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from absl import logging

from mnist_jax.core import configuration
from mnist_jax.core.errors import ConfigError, UserError
from mnist_jax.launcher import commands as C
from mnist_jax.launcher import slurm, subcommands, supervisor
from mnist_jax.launcher.subcommands import Invocation


def _check_config(config: str) -> None:
    """CONFIG names a file or a shipped config (the children resolve it themselves)."""
    try:
        configuration.resolve(config)
    except ConfigError as e:
        raise UserError(f"CONFIG {config!r}: {str(e).split(': ', 1)[1]}") from None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _hms(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m // 60}h{m % 60:02d}m{s:02d}s" if m >= 60 else f"{m}m{s:02d}s"


def run_local(inv: Invocation, site: C.Site) -> int:
    config, workdir = inv.args
    _check_config(config)
    command = C.local_command(site, config, workdir, inv.overrides, inv.options["cpu_devices"])
    if inv.options["dry_run"]:
        print(command.shell())
        return 0
    return supervisor.run([command])


def run_multiprocess(inv: Invocation, site: C.Site) -> int:
    n, config, workdir = inv.args
    if not n.isdigit() or int(n) < 1:
        raise UserError(f"N, the number of processes, must be a positive integer, got {n!r}")
    _check_config(config)
    o = inv.options
    commands = C.multiprocess_commands(
        site, int(n), config, workdir, inv.overrides, cpu_devices=o["cpu_devices"],
        port=o["port"] or _free_port(), heartbeat_timeout=o["heartbeat_timeout"],
    )  # fmt: skip
    if o["dry_run"]:
        print(shlex.join(["mkdir", "-p", str(Path(workdir) / "logs")]))
        print("\n".join(f"{c.shell()} &" for c in commands) + "\nwait")
        return 0
    return supervisor.run(commands, grace_seconds=o["heartbeat_timeout"] + 30)


def run_slurm(inv: Invocation, site: C.Site) -> int:
    config, workdir = inv.args
    _check_config(config)
    job = slurm.SlurmJob(**{k: v for k, v in inv.options.items() if k != "dry_run"})
    script = slurm.training_script(site, job, config, workdir, inv.overrides)
    job_id = slurm.submit_training(Path(workdir), script, dry_run=inv.options["dry_run"])
    if job_id:
        print(f"Submitted job {job_id}; log {Path(workdir) / f'slurm-{job_id}.out'}; "
              f"'{subcommands.prog()} status {workdir}' shows it")  # fmt: skip
    return 0


def run_status(inv: Invocation, site: C.Site) -> int:
    print(slurm.status(Path(inv.args[0])))
    return 0


def _git(site: C.Site, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(site.root), *args], capture_output=True, text=True)


def run_tpu(inv: Invocation, site: C.Site) -> int:
    config, workdir = inv.args
    _check_config(config)
    o = inv.options
    target = C.TpuTarget(
        o["name"], o["zone"], o["project"], o["remote_dir"], o["mnist_dir"], not o["no_copy"],
        o["heartbeat_timeout"],
    )  # fmt: skip
    head = _git(site, "rev-parse", "--short", "HEAD")
    if target.copy and (head.returncode != 0 or not (site.root / "pyproject.toml").is_file()):
        raise UserError(f"tpu copies a git checkout to the workers, and {site.root} is none: run "
                        "it from a clone of the repository, or with --no_copy")  # fmt: skip
    commit = head.stdout.strip() if head.returncode == 0 else "src"
    tmpdir = os.environ.get("TMPDIR", "/tmp")
    steps = C.tpu_commands(site, target, config, workdir, inv.overrides, commit=commit,
                           tmpdir=tmpdir)  # fmt: skip
    if o["dry_run"]:
        print("\n".join(shlex.join(step) for step in steps))
        return 0
    if shutil.which("gcloud") is None:
        raise UserError("gcloud not found: install the Google Cloud CLI (or use --dry_run)")
    if target.copy and _git(site, "diff", "--quiet", "HEAD").returncode != 0:
        logging.warning("uncommitted changes are not copied to the TPU workers (git HEAD is)")
    for step in steps:
        status = subprocess.run(step).returncode
        if status != 0:
            logging.error("%s exited with status %d", shlex.join(step[:5]), status)
            return status
    return 0


def _slurm_flags(options: dict) -> list[str]:
    """compare's --slurm and its resources, as the sweep takes them."""
    if not options["slurm"]:
        return []
    slurm.SlurmJob(**{n: options[n] for n in subcommands.STUDY_SLURM_OPTIONS})  # checked here
    args = ["--slurm", f"--workers={options['workers']}"]
    for name in subcommands.STUDY_SLURM_OPTIONS:
        value = options[name]
        if isinstance(value, bool):
            args.append(f"--{'' if value else 'no'}{name}")
        elif value not in (None, ""):
            args.append(f"--{name}={value}")
    return args


def run_compare(inv: Invocation, site: C.Site) -> int:
    o = inv.options
    outdir = inv.args[0] if inv.args else "runs/compare" + ("_quick" if o["quick"] else "")
    jobs = C.compare_jobs(o["jobs"], site.environ)
    configs = [name for name in o["configs"].split(",") if name]
    command = C.compare_command(site, outdir, seeds=o["seeds"], quick=o["quick"],
                                overrides=inv.overrides, jobs=jobs, configs=configs,
                                dry_run=o["dry_run"], extra=_slurm_flags(o))  # fmt: skip
    if o["dry_run"]:
        print(f"# {command.label}\n{command.shell()}", flush=True)
    start = time.monotonic()
    status = supervisor.run([command])
    if status == 0 and not o["dry_run"] and not o["slurm"]:
        logging.info("compare: done in %s; results in %s", _hms(time.monotonic() - start), outdir)
    return status


RUNNERS: dict[str, Callable[[Invocation, C.Site], int]] = {
    "local": run_local,
    "train": run_local,
    "multiprocess": run_multiprocess,
    "slurm": run_slurm,
    "status": run_status,
    "tpu": run_tpu,
    "compare": run_compare,
}


def run(inv: Invocation) -> int:
    """Runs a parsed invocation from here; its exit status."""
    return RUNNERS[inv.subcommand.name](inv, C.Site.here())
