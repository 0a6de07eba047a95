"""Launch training: on this machine, in N local processes, on a SLURM cluster, on a Cloud TPU
pod; or train the MLP and the CNN over several seeds and compare them.

  python -m mnist_jax.launch SUBCOMMAND [ARGS] [--options] [--config.key=value ...]
  python -m mnist_jax.launch SUBCOMMAND --help     # that subcommand's arguments and options

Every subcommand takes --dry_run (print the commands, run nothing) and trailing
--config.key=value overrides, which go to every `python -m mnist_jax.main` it starts.
docs/multihost.md explains multi-host runs. ./launch.sh passes these subcommands through.

Exit status: 0 success (and --help); 1 bad input (command line, config); 130 interrupted;
otherwise the exit status of the command that failed (in a multi-process launch, of the first
process to fail).
"""

import dataclasses
import os
import shlex
import shutil
import socket
import subprocess
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from absl import flags, logging

from mnist_jax import cli
from mnist_jax.checks import closest
from mnist_jax.errors import UserError
from mnist_jax.launcher import commands as C
from mnist_jax.launcher import supervisor


@dataclasses.dataclass(frozen=True)
class Option:
    name: str
    default: Any  # its type makes the flag's type: bool, int, str (None: an int, unset)
    metavar: str
    help: str

    def define(self, fv: flags.FlagValues) -> None:
        if isinstance(self.default, bool):
            flags.DEFINE_bool(self.name, self.default, self.help, flag_values=fv)
        elif isinstance(self.default, int) or self.default is None:
            upper = 65535 if self.name == "port" else None
            flags.DEFINE_integer(self.name, self.default, self.help, lower_bound=1,
                                 upper_bound=upper, flag_values=fv)  # fmt: skip
        else:
            flags.DEFINE_string(self.name, self.default, self.help, flag_values=fv)


WIDTH = 96  # columns of the help text
DRY_RUN = Option("dry_run", False, "", "print the commands instead of running them")


def _heartbeat(default: int) -> Option:
    return Option(
        "heartbeat_timeout", default, "S",
        "a process silent (dead, hung) for S seconds stops every other one with an error",
    )  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Subcommand:
    name: str
    args: str  # positional arguments, as the usage line shows them
    summary: str
    description: str
    options: tuple[Option, ...]
    example: str

    def flag_values(self) -> flags.FlagValues:
        fv = flags.FlagValues()
        for option in self.options:
            option.define(fv)
        return fv

    def help(self) -> str:
        description = textwrap.fill(self.description, WIDTH, break_on_hyphens=False)
        lines = [f"usage: {prog()} {self.name} {self.args} [options] [--config.key=value ...]",
                 "", description, "", "options:"]  # fmt: skip
        for o in self.options:
            spec = f"--{o.name}" + (f"={o.metavar}" if o.metavar else "")
            default = "" if o.default in (None, "", False) else f" (default {o.default})"
            text = f"  {spec:26s}{o.help}{default}"
            lines.append(
                textwrap.fill(text, WIDTH, subsequent_indent=" " * 28, break_on_hyphens=False)
            )
        lines += ["  --config.key=value        any config override, passed to mnist_jax.main",
                  "", f"e.g. {prog()} {self.name} {self.example}", ""]  # fmt: skip
        return "\n".join(lines)


LOCAL = Subcommand(
    "local", "CONFIG WORKDIR", "train in one process on every device of this machine",
    "Trains in one process on every device of this machine (GPUs, TPUs, else the CPU).",
    (Option("cpu_devices", None, "N", "run on N simulated CPU devices instead (XLA_FLAGS), "
            "e.g. to compare with 'multiprocess'"), DRY_RUN),
    "configs/mlp.py runs/mlp --cpu_devices=4 --config.num_epochs=3",
)  # fmt: skip
SUBCOMMANDS = {
    s.name: s
    for s in (
        LOCAL,
        dataclasses.replace(LOCAL, name="train", summary="the same as local"),
        Subcommand(
            "multiprocess", "N CONFIG WORKDIR", "train in N processes on this machine (CPU)",
            "N processes on this machine, each with K CPU devices, connected by jax.distributed "
            "(coordinator localhost:P) and JAX's CPU collectives (gloo): the multi-host code "
            "path without a cluster, with the numbers of one process with N*K devices. Process "
            "0 prints here; the others log to WORKDIR/logs/process_<i>.log. If one fails, the "
            "others stop within S seconds; the exit status is that of the first failure, and "
            "its log's tail is shown. SIGINT/SIGTERM reach every process.",
            (Option("cpu_devices", 2, "K", "CPU devices per process"),
             Option("port", None, "P", "coordinator port on localhost (default: a free one)"),
             _heartbeat(60), DRY_RUN),
            "2 configs/mlp.py runs/mlp_2proc --config.num_epochs=3",
        ),
        Subcommand(
            "slurm", "CONFIG WORKDIR", "submit an sbatch job: one process per GPU (srun)",
            "Writes WORKDIR/slurm_job.sbatch and submits it: N nodes x G GPUs, one process per "
            "GPU started by srun; jax.distributed finds its peers from the SLURM environment. "
            "The job runs in this directory; WORKDIR must be on a filesystem every node shares. "
            "The job log is WORKDIR/slurm-<jobid>.out. A dead process stops the others within S "
            "seconds, and srun --kill-on-bad-exit ends the step.",
            (Option("nodes", 1, "N", "nodes"), Option("gpus_per_node", 8, "G", "GPUs per node"),
             Option("time", "01:00:00", "T", "time limit, HH:MM:SS, MM or D-HH:MM:SS"),
             Option("partition", "", "P", "partition"), Option("account", "", "A", "account"),
             Option("cpus_per_task", 8, "C", "CPUs per process"),
             Option("job_name", "mnist_jax", "NAME", "job name"), _heartbeat(120),
             dataclasses.replace(DRY_RUN, help="print the sbatch script and command instead")),
            "configs/cnn.py /shared/runs/cnn --nodes=2 --gpus_per_node=4 --partition=gpu "
            "--time=00:30:00",
        ),
        Subcommand(
            "tpu", "CONFIG WORKDIR", "run on every worker of a Cloud TPU VM pod (gcloud)",
            "Runs the same command on every worker of the Cloud TPU VM (pod slice) --name with "
            "'gcloud compute tpus tpu-vm ssh --worker=all': copies this checkout (git HEAD) to "
            "DIR, creates its .venv with jax[tpu], and trains with --distributed=on (JAX finds "
            "the workers from the TPU metadata). WORKDIR must be a directory every worker "
            "shares (e.g. an NFS/Filestore mount).",
            (Option("name", "", "TPU", "the TPU VM (required)"),
             Option("zone", "", "ZONE", "its zone (required)"),
             Option("project", "", "P", "Google Cloud project"),
             Option("remote_dir", "mnist_jax", "DIR", "checkout on the workers, under ~ unless "
                    "absolute"),
             Option("mnist_dir", "", "DIR", "the MNIST files on the workers (default: each "
                    "worker downloads them)"),
             Option("no_copy", False, "", "the code is already in DIR: only ssh"),
             _heartbeat(120),
             dataclasses.replace(DRY_RUN, help="print the git and gcloud commands instead")),
            "configs/cnn.py /mnt/shared/runs/cnn --name=my-v4-32 --zone=us-central2-b",
        ),
        Subcommand(
            "compare", "[OUTDIR]", "train the MLP and the CNN over seeds, then compare them",
            "Runs the study experiments/compare.py (python -m mnist_jax.sweep): trains "
            "configs/mlp.py and configs/cnn.py (or --configs) with seeds 0..K-1 into "
            "OUTDIR/{mlp,cnn}/seed_<s> (default OUTDIR runs/compare, runs/compare_quick with "
            "--quick), seed by seed, --jobs runs at a time; then evaluates them all: "
            "OUTDIR/comparison.json, report.md and figures. Running it again skips finished "
            "runs and resumes an interrupted one. A failed run stops it with that run's exit "
            "status.",
            (Option("seeds", 3, "K", "seeds per model"),
             Option("configs", ",".join(C.MODELS), "NAME,...", "the shipped configs to train "
                    "and compare (configs/NAME.py), each into OUTDIR/NAME/, e.g. "
                    "mlp_best,cnn_best"),
             Option("jobs", "auto", "N", "training runs at once; with N > 1 each worker logs "
                    "to OUTDIR/logs/ and their progress lines show here. 'auto': 2 where JAX can "
                    "only use the CPU (their numbers are the same bits as one at a time), 1 "
                    "with a GPU or TPU"),
             Option("quick", False, "", "the configs' quick variant (configs/mlp.py:quick): a "
                    "smoke test of the whole pipeline"), DRY_RUN),
            "runs/compare --seeds=2 --config.num_epochs=5",
        ),
    )
}  # fmt: skip


def prog() -> str:
    """How the user called the launcher (./launch.sh sets MNIST_JAX_PROG)."""
    return os.environ.get("MNIST_JAX_PROG", "python -m mnist_jax.launch")


def top_help(_full: bool = False) -> str:
    width = max(len(f"{s.name} {s.args}") for s in SUBCOMMANDS.values()) + 2
    rows = [f"  {f'{s.name} {s.args}':{width}s}{s.summary}" for s in SUBCOMMANDS.values()]
    doc = __doc__.replace("python -m mnist_jax.launch", prog())
    return f"{doc.strip()}\n\nsubcommands:\n" + "\n".join(rows) + "\n"


@dataclasses.dataclass(frozen=True)
class Invocation:
    subcommand: Subcommand
    args: list[str]  # the positional arguments
    options: dict[str, Any]
    overrides: list[str]  # --config.key=value, passed on to mnist_jax.main


def split_overrides(args: list[str]) -> tuple[list[str], list[str]]:
    """(other arguments, --config.key=value overrides); `--config.key value` becomes one."""
    rest, overrides = [], []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith(("--config.", "-config.", "--noconfig.")):
            if "=" not in arg and i + 1 < len(args) and not args[i + 1].startswith("-"):
                arg, i = f"{arg}={args[i + 1]}", i + 1
            overrides.append(arg)
        else:
            rest.append(arg)
        i += 1
    return rest, overrides


def parse_command_line(argv: list[str]) -> Invocation:
    """The subcommand, its positional arguments, options and overrides; exits on bad input."""
    flags.FLAGS(argv[:1])  # absl's own flags keep their defaults
    if len(argv) < 2:
        cli.exit_with(f"error: give a subcommand: {', '.join(SUBCOMMANDS)} (see --help)")
    if cli.help_requested(argv[:2]):
        cli.print_help(top_help())
    name = argv[1]
    if name not in SUBCOMMANDS:
        guess = closest(name, list(SUBCOMMANDS))
        hint = f"did you mean {guess!r}? " if guess else ""
        cli.exit_with(f"error: unknown subcommand {name!r}; {hint}valid: {', '.join(SUBCOMMANDS)}")
    sub = SUBCOMMANDS[name]
    rest, overrides = split_overrides(argv[2:])
    fv = sub.flag_values()
    positional = cli.parse_flags([f"{argv[0]} {name}", *rest], fv, lambda _: sub.help())[1:]
    want = [a for a in sub.args.split() if not a.startswith("[")]
    optional = len(sub.args.split()) - len(want)
    if not len(want) <= len(positional) <= len(want) + optional:
        got = shlex.join(positional) if positional else "nothing"
        cli.exit_with(f"error: {name} takes {sub.args}, got {got} (see {name} --help)")
    return Invocation(sub, positional, {o.name: fv[o.name].value for o in sub.options}, overrides)


# --- The subcommands -------------------------------------------------------------------------


def _check_config(config: str) -> None:
    path = config.partition(":")[0]
    if not Path(path).is_file():
        raise UserError(f"CONFIG {config!r}: no such file (e.g. configs/mlp.py)")


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
    job = C.SlurmJob(**{k: v for k, v in inv.options.items() if k != "dry_run"})
    script = C.slurm_script(site, job, config, workdir, inv.overrides)
    path, submit = C.slurm_script_path(workdir), C.sbatch_argv(workdir)
    if inv.options["dry_run"]:
        print(f"# {path}\n{script}# submit with:\n{shlex.join(submit)}")
        return 0
    if shutil.which("sbatch") is None:
        raise UserError("sbatch not found: submit from a SLURM login node (or use --dry_run)")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(script)
    return subprocess.run(submit).returncode


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


def run_compare(inv: Invocation, site: C.Site) -> int:
    o = inv.options
    outdir = inv.args[0] if inv.args else "runs/compare" + ("_quick" if o["quick"] else "")
    jobs = C.compare_jobs(o["jobs"], site.environ)
    command = C.compare_command(site, outdir, seeds=o["seeds"], quick=o["quick"],
                                overrides=inv.overrides, jobs=jobs,
                                configs=o["configs"].split(","), dry_run=o["dry_run"])  # fmt: skip
    if o["dry_run"]:
        print(f"# {command.label}\n{command.shell()}", flush=True)
    start = time.monotonic()
    status = supervisor.run([command])
    if status == 0 and not o["dry_run"]:
        logging.info("compare: done in %s; results in %s", _hms(time.monotonic() - start), outdir)
    return status


RUNNERS: dict[str, Callable[[Invocation, C.Site], int]] = {
    "local": run_local,
    "train": run_local,
    "multiprocess": run_multiprocess,
    "slurm": run_slurm,
    "tpu": run_tpu,
    "compare": run_compare,
}


def main(inv: Invocation) -> int:
    return RUNNERS[inv.subcommand.name](inv, C.Site.here())


if __name__ == "__main__":
    cli.run(main, flags_parser=parse_command_line)
