"""The launcher's command line: its subcommands, their options and help, as data.

`python -m mnist_jax.launch` (and ./launch.sh) parse their arguments here; launcher/run.py runs
the parsed invocation, and launcher/commands.py builds the commands it starts.
"""

import dataclasses
import os
import shlex
import textwrap
from typing import Any

from absl import flags

from mnist_jax.core import cli
from mnist_jax.core.checks import closest
from mnist_jax.launcher import slurm


@dataclasses.dataclass(frozen=True)
class Option:
    name: str
    default: Any  # its type makes the flag's type: bool, int, str (None: an int, unset)
    metavar: str
    help: str
    lower: int = 1  # an integer option's least value

    def define(self, fv: flags.FlagValues) -> None:
        if isinstance(self.default, bool):
            flags.DEFINE_bool(self.name, self.default, self.help, flag_values=fv)
        elif isinstance(self.default, int) or self.default is None:
            upper = 65535 if self.name == "port" else None
            flags.DEFINE_integer(self.name, self.default, self.help, lower_bound=self.lower,
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
                 "", description, *_CONFIG_HELP * ("CONFIG" in self.args), "",
                 "options:"]  # fmt: skip
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


_CONFIG_HELP = ("", *textwrap.wrap(
    "CONFIG: a shipped config's name (mlp, cnn, lenet, ...: configs/NAME.py in the repository) "
    "or a config file's path, either with an optional variant: cnn:quick, my_config.py:quick.",
    WIDTH))  # fmt: skip

# The resources a study's --slurm takes (its workers are single processes).
STUDY_SLURM_OPTIONS = ("gpus_per_node", "cpus_per_task", "cpu_devices", "time", "partition",
                       "account", "job_name", "signal_seconds", "requeue")  # fmt: skip
_JOB = {f.name: f.default for f in dataclasses.fields(slurm.SlurmJob)}  # the defaults, once
SLURM_OPTIONS = (
    Option("nodes", _JOB["nodes"], "N", "nodes"),
    Option("gpus_per_node", _JOB["gpus_per_node"], "G", "GPUs per node, one process each; 0: "
           "CPU only, no GRES", lower=0),
    Option("tasks_per_node", _JOB["tasks_per_node"], "T", "processes per node (default: G, or "
           "1 without GPUs)"),
    Option("cpus_per_task", _JOB["cpus_per_task"], "C", "CPUs per process"),
    Option("cpu_devices", _JOB["cpu_devices"], "K", "without GPUs: simulated JAX CPU devices "
           "per process (default 1)"),
    Option("time", _JOB["time"], "T", "time limit, HH:MM:SS, MM or D-HH:MM:SS"),
    Option("partition", _JOB["partition"], "P", "partition"),
    Option("account", _JOB["account"], "A", "account"),
    Option("job_name", _JOB["job_name"], "NAME", "job name"),
    _heartbeat(_JOB["heartbeat_timeout"]),
    Option("signal_seconds", _JOB["signal_seconds"], "S", "SIGTERM this long before the time "
           "limit: checkpoint, exit 75, requeue; 0: none", lower=0),
    Option("requeue", _JOB["requeue"], "", "requeue the job when it stopped with a checkpoint "
           "(exit 75)"),
    dataclasses.replace(DRY_RUN, help="print the sbatch script and command instead"),
)  # fmt: skip
LOCAL = Subcommand(
    "local", "CONFIG WORKDIR", "train in one process on every device of this machine",
    "Trains in one process on every device of this machine (GPUs, TPUs, else the CPU).",
    (Option("cpu_devices", None, "N", "run on N simulated CPU devices instead (XLA_FLAGS), "
            "e.g. to compare with 'multiprocess'"), DRY_RUN),
    "mlp runs/mlp --cpu_devices=4 --config.num_epochs=3",
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
            "2 mlp runs/mlp_2proc --config.num_epochs=3",
        ),
        Subcommand(
            "slurm", "CONFIG WORKDIR", "submit an sbatch job: N nodes x T processes (srun)",
            "Writes WORKDIR/slurm_job.sbatch and submits it: N nodes x T processes started by "
            "srun; jax.distributed finds its peers from the SLURM environment. With "
            "--gpus_per_node=G > 0 the job asks for G GPUs per node (GRES) and runs one process "
            "per GPU; with G = 0 (the default, for CPU-only clusters or ones without GRES) it "
            "runs T processes per node on --cpu_devices simulated CPU devices each. The job runs "
            "in this directory; WORKDIR must be on a filesystem every node shares. SIGTERM "
            "--signal_seconds before the time limit, or from a preemption or 'scontrol "
            "requeue', makes the processes checkpoint and exit 75; the job then requeues itself "
            "(--norequeue: it ends) and resumes from that checkpoint. The job log, appended "
            "over requeues, is WORKDIR/slurm-<jobid>.out; 'status WORKDIR' shows the job. A "
            "dead process stops the others within S seconds, and srun --kill-on-bad-exit ends "
            "the step.",
            SLURM_OPTIONS,
            "cnn /shared/runs/cnn --nodes=2 --gpus_per_node=4 --partition=gpu "
            "--time=00:30:00  (CPU cluster: --tasks_per_node=2 --cpu_devices=2)",
        ),
        Subcommand(
            "status", "DIR", "the SLURM jobs submitted for a run or study directory",
            "Shows every job submitted from DIR (by 'slurm', 'compare --slurm' or 'sweep "
            "--slurm'): its state, exit code and log (array tasks one by one), and the last "
            "lines of the log of each failed one; from scontrol, or sacct for jobs the "
            "controller has forgotten.",
            (), "/shared/runs/cnn",
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
            "cnn /mnt/shared/runs/cnn --name=my-v4-32 --zone=us-central2-b",
        ),
        Subcommand(
            "compare", "[OUTDIR]", "train the MLP and the CNN over seeds, then compare them",
            "Runs the shipped study compare (experiments/compare.py; python -m "
            "mnist_jax.sweep): trains the configs mlp and cnn (or --configs) with seeds 0..K-1 "
            "into "
            "OUTDIR/{mlp,cnn}/seed_<s> (default OUTDIR runs/compare, runs/compare_quick with "
            "--quick), seed by seed, --jobs runs at a time; then evaluates them all: "
            "OUTDIR/comparison.json, report.md and figures. Running it again skips finished "
            "runs and resumes an interrupted one. A failed run stops it with that run's exit "
            "status.",
            (Option("seeds", 3, "K", "seeds per model"),
             Option("configs", "", "NAME,...", "the shipped configs to train and compare "
                    "(configs/NAME.py; default: the compare study's, mlp,cnn), each into "
                    "OUTDIR/NAME/, e.g. "
                    "mlp_best,cnn_best"),
             Option("jobs", "auto", "N", "training runs at once; with N > 1 each worker logs "
                    "to OUTDIR/logs/ and their progress lines show here. 'auto': 2 where JAX can "
                    "only use the CPU (their numbers are the same bits as one at a time), 1 "
                    "with a GPU or TPU"),
             Option("quick", False, "", "the configs' quick variant (mlp:quick): a "
                    "smoke test of the whole pipeline"),
             Option("slurm", False, "", "submit to SLURM instead (sweep --slurm): a job array "
                    "of --workers tasks trains the runs, then one job evaluates them; OUTDIR on "
                    "a shared filesystem; 'status OUTDIR' shows the jobs"),
             Option("workers", 2, "W", "with --slurm: array tasks"),
             *(dataclasses.replace(o, help=f"with --slurm: {o.help}") for o in SLURM_OPTIONS
               if o.name in STUDY_SLURM_OPTIONS),
             DRY_RUN),
            "runs/compare --seeds=2 --config.num_epochs=5  (SLURM: /shared/compare --slurm "
            "--workers=6 --gpus_per_node=1)",
        ),
    )
}  # fmt: skip


def prog() -> str:
    """How the user called the launcher (./launch.sh sets MNIST_JAX_PROG)."""
    return os.environ.get("MNIST_JAX_PROG", "python -m mnist_jax.launch")


def top_help(doc: str) -> str:
    """The launcher's help: `doc` (the binary's docstring) and one line per subcommand."""
    width = max(len(f"{s.name} {s.args}") for s in SUBCOMMANDS.values()) + 2
    rows = [f"  {f'{s.name} {s.args}':{width}s}{s.summary}" for s in SUBCOMMANDS.values()]
    doc = doc.replace("python -m mnist_jax.launch", prog())
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


def parse_command_line(argv: list[str], doc: str) -> Invocation:
    """The subcommand, its positional arguments, options and overrides; exits on bad input.
    `doc`: the launcher's own description, shown by --help."""
    flags.FLAGS(argv[:1])  # absl's own flags keep their defaults
    if len(argv) < 2:
        cli.exit_with(f"error: give a subcommand: {', '.join(SUBCOMMANDS)} (see --help)")
    if cli.help_requested(argv[:2]):
        cli.print_help(top_help(doc))
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
