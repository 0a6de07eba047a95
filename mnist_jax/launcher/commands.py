"""The commands a launch runs, built as data: argv lists, environments, script and shell text.

Nothing here runs anything, so tests check the exact commands. Text that reaches a shell (the
sbatch script, the remote command of a TPU launch, the --dry_run listings) quotes every value
with shlex.quote: paths with spaces, quotes or `$` arrive unchanged.
"""

import contextlib
import dataclasses
import importlib.metadata
import importlib.util
import os
import re
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from mnist_jax.core import configuration
from mnist_jax.core.errors import UserError

# The checkout (configs/, launch.sh, mnist_jax/); in an installed package, site-packages.
ROOT = Path(__file__).resolve().parents[2]


@dataclasses.dataclass(frozen=True)
class Site:
    """Where a launch starts: the children's interpreter, the repository, the working directory
    and the environment variables the commands depend on (PYTHONPATH, MNIST_DIR)."""

    python: str
    root: Path
    cwd: Path
    environ: Mapping[str, str]

    @classmethod
    def here(cls) -> "Site":
        return cls(sys.executable, ROOT, Path.cwd(), dict(os.environ))

    def python_path(self) -> dict[str, str]:
        """PYTHONPATH with the checkout on it, when the children would not find this package
        from the working directory; else (an installed package, or cwd the checkout) nothing."""
        existing = self.environ.get("PYTHONPATH", "")
        if (
            not (self.root / "pyproject.toml").is_file()
            or self.cwd.resolve() == self.root.resolve()
            or str(self.root) in existing.split(":")
        ):
            return {}
        return {"PYTHONPATH": ":".join(p for p in (str(self.root), existing) if p)}


@dataclasses.dataclass(frozen=True)
class Command:
    """One process: `argv` with `env` set on top of the launcher's environment; its output goes
    to `log` (stdout and stderr) or, without one, to the launcher's console."""

    argv: tuple[str, ...]
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    log: Path | None = None
    label: str = ""

    def shell(self) -> str:
        """The command as one line of shell."""
        words = ["env", *(f"{k}={v}" for k, v in self.env.items())] if self.env else []
        line = shlex.join([*words, *self.argv])
        return f"{line} > {shlex.quote(str(self.log))} 2>&1" if self.log else line


def main_argv(
    site: Site, config: str, workdir: str, overrides: Sequence[str], unbuffered: bool = False
) -> tuple[str, ...]:
    """`python -m mnist_jax.main --config=CONFIG --workdir=WORKDIR [overrides]`."""
    return (
        site.python,
        *(["-u"] if unbuffered else []),
        "-m",
        "mnist_jax.main",
        f"--config={config}",
        f"--workdir={workdir}",
        *overrides,
    )


_DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count"


def xla_flags_with_devices(count: int, existing: str = "") -> str:
    """`existing` XLA_FLAGS (e.g. --xla_cpu_max_isa=AVX2) with the simulated CPU device count
    set to `count`, replacing any count already there."""
    kept = [f for f in existing.split() if not f.startswith(_DEVICE_COUNT_FLAG)]
    return " ".join([f"{_DEVICE_COUNT_FLAG}={count}", *kept])


def cpu_devices_env(site: Site, count: int) -> dict[str, str]:
    """JAX on `count` simulated CPU devices, keeping the site's other XLA flags."""
    flags = xla_flags_with_devices(count, site.environ.get("XLA_FLAGS", ""))
    return {"JAX_PLATFORMS": "cpu", "XLA_FLAGS": flags}


def local_command(
    site: Site, config: str, workdir: str, overrides: Sequence[str], cpu_devices: int | None
) -> Command:
    """One process on every device of this machine, or on `cpu_devices` simulated CPU devices."""
    env = site.python_path() | (cpu_devices_env(site, cpu_devices) if cpu_devices else {})
    return Command(main_argv(site, config, workdir, overrides), env, label="train")


def multiprocess_commands(
    site: Site,
    num_processes: int,
    config: str,
    workdir: str,
    overrides: Sequence[str],
    *,
    cpu_devices: int,
    port: int,
    heartbeat_timeout: int,
) -> list[Command]:
    """N processes of one run on this machine, connected through a coordinator on `port`.

    Process 0 prints to the console; process i > 0 logs to WORKDIR/logs/process_<i>.log.
    """
    commands = []
    for i in range(num_processes):
        env = site.python_path() | cpu_devices_env(site, cpu_devices)
        env |= {
            "MNIST_JAX_COORDINATOR": f"localhost:{port}",
            "MNIST_JAX_NUM_PROCESSES": str(num_processes),
            "MNIST_JAX_PROCESS_ID": str(i),
            "MNIST_JAX_HEARTBEAT_TIMEOUT": str(heartbeat_timeout),
        }
        log = Path(workdir) / "logs" / f"process_{i}.log" if i else None
        commands.append(
            Command(main_argv(site, config, workdir, overrides), env, log, f"process {i}")
        )
    return commands


@dataclasses.dataclass(frozen=True)
class TpuTarget:
    """A Cloud TPU VM (pod slice) and where the code goes on its workers."""

    name: str
    zone: str
    project: str = ""
    remote_dir: str = "mnist_jax"  # relative to the home directory on every worker, or absolute
    mnist_dir: str = ""  # the MNIST files on the workers ('' = each worker downloads them)
    copy: bool = True  # copy this checkout (git HEAD) to the workers first
    heartbeat_timeout: int = 120

    def __post_init__(self):
        if not self.name or not self.zone:
            raise UserError("tpu needs --name=TPU and --zone=ZONE")
        if not self.remote_dir:
            raise UserError("--remote_dir must not be empty")
        if self.heartbeat_timeout < 1:
            raise UserError(f"--heartbeat_timeout must be >= 1, got {self.heartbeat_timeout}")

    def gcloud_flags(self) -> list[str]:
        return [f"--zone={self.zone}", *([f"--project={self.project}"] if self.project else [])]


def tpu_tarball(commit: str, tmpdir: str) -> Path:
    return Path(tmpdir) / f"mnist_jax-{commit}.tar.gz"


def remote_config(site: Site, config: str) -> str:
    """CONFIG as the workers see it: relative to the copied repository when it lies inside it."""
    path, colon, variant = config.partition(":")
    with contextlib.suppress(ValueError):  # outside the repository: as given
        path = (site.cwd / path).resolve().relative_to(site.root.resolve()).as_posix()
    return f"{path}{colon}{variant}"


def tpu_remote_command(
    target: TpuTarget,
    config: str,
    workdir: str,
    overrides: Sequence[str],
    tarball_name: str | None,
) -> str:
    """The shell command every worker runs: unpack, create .venv with jax[tpu], train."""
    q = shlex.quote
    remote_dir = target.remote_dir
    where = q(remote_dir) if remote_dir.startswith("/") else f'"$HOME"/{q(remote_dir)}'
    steps = ["set -euo pipefail"]
    if tarball_name is not None:
        steps.append(f'mkdir -p {where} && tar -xzf "$HOME"/{q(tarball_name)} -C {where}')
    env = {
        "MNIST_JAX_DISTRIBUTED": "on",
        "MNIST_JAX_HEARTBEAT_TIMEOUT": str(target.heartbeat_timeout),
    }
    if target.mnist_dir:
        env["MNIST_DIR"] = target.mnist_dir
    train = [".venv/bin/python", "-u", "-m", "mnist_jax.main", f"--config={config}",
             f"--workdir={workdir}", *overrides]  # fmt: skip
    steps.append(
        f"cd {where} && PYTHON=python3 ./launch.sh setup"
        ' && .venv/bin/pip install --quiet "jax[tpu]==$(.venv/bin/python -c'
        " 'import jax; print(jax.__version__)')\""
        f" && {' '.join(f'{k}={q(v)}' for k, v in env.items())} {shlex.join(train)}"
    )
    return "; ".join(steps)


def tpu_commands(
    site: Site,
    target: TpuTarget,
    config: str,
    workdir: str,
    overrides: Sequence[str],
    *,
    commit: str,
    tmpdir: str,
) -> list[list[str]]:
    """[git archive, gcloud scp, gcloud ssh], or only the ssh with copy=False."""
    tarball = tpu_tarball(commit, tmpdir)
    gcloud = ["gcloud", "compute", "tpus", "tpu-vm"]
    remote = tpu_remote_command(
        target, remote_config(site, config), workdir, overrides,
        tarball.name if target.copy else None,
    )  # fmt: skip
    ssh = [*gcloud, "ssh", target.name, *target.gcloud_flags(), "--worker=all",
           f"--command={remote}"]  # fmt: skip
    if not target.copy:
        return [ssh]
    archive = ["git", "-C", str(site.root), "archive", "--format=tar.gz", "-o", str(tarball),
               "HEAD"]  # fmt: skip
    scp = [*gcloud, "scp", str(tarball), f"{target.name}:~/", "--worker=all",
           *target.gcloud_flags()]  # fmt: skip
    return [archive, scp, ssh]


CPU_COMPARE_JOBS = 2  # training runs at once on a CPU-only machine (compare --jobs=auto)


def compare_jobs(value: str, environ: Mapping[str, str]) -> int:
    """`compare --jobs`: a number, or 'auto': CPU_COMPARE_JOBS where JAX can only use the CPU,
    1 where it may use a GPU or TPU (one accelerator is not shared between processes).

    Decided without initialising JAX here, which would claim the accelerator: by JAX_PLATFORMS,
    else by whether a GPU/TPU plugin is installed (found as JAX finds them: the `jax_plugins`
    namespace package or entry points, and libtpu).
    """
    if value != "auto":
        try:
            jobs = int(value)
        except ValueError:
            jobs = 0
        if jobs < 1:
            raise UserError(f"--jobs={value!r} is invalid; valid: 'auto' or a number >= 1")
        return jobs
    platforms = environ.get("JAX_PLATFORMS", "")
    if platforms:
        cpu_only = platforms.strip().lower() == "cpu"
    else:
        cpu_only = not (
            importlib.util.find_spec("jax_plugins")
            or importlib.metadata.entry_points(group="jax_plugins")
            or importlib.util.find_spec("libtpu")
        )
    return min(CPU_COMPARE_JOBS, os.cpu_count() or 1) if cpu_only else 1


def check_compare_configs(names: Sequence[str]) -> None:
    """`compare --configs`: distinct names of shipped configs, one line naming the valid ones."""
    valid = configuration.shipped_names()
    bad = [n for n in names if n not in valid]
    if not names or bad:
        raise UserError(f"--configs={','.join(names)!r}: {bad[0] if bad else 'empty'} is not a "
                        f"shipped config; valid: {', '.join(valid)} (configs/NAME.py)")  # fmt: skip
    if len(set(names)) != len(names):
        raise UserError(f"--configs={','.join(names)!r} names a config twice")


def compare_command(
    site: Site,
    outdir: str,
    *,
    seeds: int,
    quick: bool,
    overrides: Sequence[str],
    jobs: int = 1,
    configs: Sequence[str] = (),
    dry_run: bool = False,
    extra: Sequence[str] = (),
) -> Command:
    """The shipped study `compare` (experiments/compare.py) run by the sweep: the shipped
    config NAME for every NAME in `configs` (empty: the study's own, mlp and cnn; their `quick`
    variant with `quick`), seeds 0..seeds-1 into OUTDIR/NAME/seed_<s>, seed by seed, then one
    evaluation of them all into OUTDIR (robustness, the seed ensembles and the int8 models).
    `jobs` > 1: that many worker processes, logging to OUTDIR/logs/."""
    if configs:
        check_compare_configs(configs)
    if seeds < 1:
        raise UserError(f"--seeds must be >= 1, got {seeds}")
    if any(re.match(r"^--?(no)?config\.seed(=|$)", o) for o in overrides):
        raise UserError("compare sets config.seed itself: --seeds=K trains seeds 0..K-1")
    variant = ",".join([*configs, *(["quick"] if quick else [])])
    argv = (site.python, "-m", "mnist_jax.sweep",
            f"--study=compare{':' * bool(variant)}{variant}",
            f"--output_dir={outdir}", f"--seeds={seeds}", f"--jobs={jobs}", *overrides,
            *extra, *(["--dry_run"] if dry_run else []))  # fmt: skip
    label = f"seeds 0-{seeds - 1} of each config, {jobs} at a time, then their evaluation"
    return Command(argv, site.python_path(), label=label)
