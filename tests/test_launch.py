"""The launcher: commands built as data, shell text that survives hostile paths, the process
supervisor on real processes, and launch.sh's --help and --dry_run.

The real multi-process training launch runs in test_multihost.py.
"""

import json
import os
import shlex
import signal
import stat
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from conftest import ROOT

from mnist_jax.core import configuration
from mnist_jax.core.errors import UserError
from mnist_jax.launcher import commands as C
from mnist_jax.launcher import slurm, subcommands, supervisor

PY = "/venv/bin/python"
HOSTILE = 'it\'s a $HOME "dir"'  # a quote, a dollar, double quotes and spaces
SITE = C.Site(PY, ROOT, ROOT, {"MNIST_DIR": "/data/m nist"})


def main_args(argv) -> list[str]:
    """The arguments after `-m mnist_jax.main`."""
    argv = list(argv)
    return argv[argv.index("mnist_jax.main") + 1 :]


def bash_syntax_ok(script: str) -> bool:
    return subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0


def dump_argv_program(path: Path, out: Path) -> None:
    """An executable that records its arguments, directory and a few variables as JSON (and
    answers `-c CODE`, the TPU launch's question for jax's version, with 0.0.0)."""
    names = ("MNIST_DIR", "MNIST_JAX_DISTRIBUTED", "MNIST_JAX_HEARTBEAT_TIMEOUT")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        "if sys.argv[1:2] == ['-c']:\n"
        "    sys.exit(print('0.0.0'))\n"
        "record = {'argv': sys.argv[1:], 'cwd': os.getcwd(),\n"
        f"          'env': {{k: os.environ.get(k) for k in {names!r}}}}}\n"
        f"json.dump(record, open({str(out)!r}, 'w'))\n"
    )
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


# --- Builders ----------------------------------------------------------------------------------


def test_local_command():
    cmd = C.local_command(SITE, "configs/mlp.py", "runs/m", ["--config.num_epochs=3"], 4)
    assert cmd.argv == (PY, "-m", "mnist_jax.main", "--config=configs/mlp.py",
                        "--workdir=runs/m", "--config.num_epochs=3")  # fmt: skip
    assert cmd.env == {"JAX_PLATFORMS": "cpu",
                       "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}  # fmt: skip
    assert C.local_command(SITE, "c.py", "w", [], None).env == {}


def test_simulated_devices_keep_the_other_xla_flags():
    """A launch on simulated devices under XLA_FLAGS=--xla_cpu_max_isa=AVX2 keeps the ISA limit;
    a device count already there is replaced, not doubled."""
    flags = "--xla_cpu_max_isa=AVX2 --xla_force_host_platform_device_count=8"
    site = C.Site(PY, ROOT, ROOT, {"XLA_FLAGS": flags})
    env = C.local_command(site, "c.py", "w", [], 2).env
    assert env["XLA_FLAGS"] == "--xla_force_host_platform_device_count=2 --xla_cpu_max_isa=AVX2"
    assert C.xla_flags_with_devices(4) == "--xla_force_host_platform_device_count=4"


def test_from_another_directory_the_children_find_the_repository(tmp_path):
    elsewhere = C.Site(PY, ROOT, tmp_path, {"PYTHONPATH": "/x"})
    assert C.local_command(elsewhere, "c.py", "w", [], None).env == {"PYTHONPATH": f"{ROOT}:/x"}
    already = C.Site(PY, ROOT, tmp_path, {"PYTHONPATH": f"/x:{ROOT}"})
    assert C.local_command(already, "c.py", "w", [], None).env == {}


def test_multiprocess_commands():
    cmds = C.multiprocess_commands(SITE, 3, "configs/mlp.py", HOSTILE, ["--config.seed=1"],
                                   cpu_devices=2, port=1234, heartbeat_timeout=15)  # fmt: skip
    assert len(cmds) == 3
    for i, cmd in enumerate(cmds):
        assert main_args(cmd.argv) == ["--config=configs/mlp.py", f"--workdir={HOSTILE}",
                                       "--config.seed=1"]  # fmt: skip
        assert cmd.env["MNIST_JAX_PROCESS_ID"] == str(i)
        assert cmd.env["MNIST_JAX_NUM_PROCESSES"] == "3"
        assert cmd.env["MNIST_JAX_COORDINATOR"] == "localhost:1234"
        assert cmd.env["MNIST_JAX_HEARTBEAT_TIMEOUT"] == "15"
        assert cmd.env["XLA_FLAGS"] == "--xla_force_host_platform_device_count=2"
        assert cmd.log == (None if i == 0 else Path(HOSTILE) / "logs" / f"process_{i}.log")
    words = shlex.split(cmds[1].shell())  # the --dry_run line parses back to the same command
    assert words[0] == "env" and words[-3:] == [">", f"{HOSTILE}/logs/process_1.log", "2>&1"]
    assert tuple(words[1 + len(cmds[1].env) : -3]) == cmds[1].argv


def test_tpu_commands():
    target = C.TpuTarget("pod", "z1", project="p")
    archive, scp, ssh = C.tpu_commands(SITE, target, "configs/cnn.py", "/mnt/runs", [],
                                       commit="abc1234", tmpdir="/tmp")  # fmt: skip
    assert archive == ["git", "-C", str(ROOT), "archive", "--format=tar.gz", "-o",
                       "/tmp/mnist_jax-abc1234.tar.gz", "HEAD"]  # fmt: skip
    assert scp == ["gcloud", "compute", "tpus", "tpu-vm", "scp", "/tmp/mnist_jax-abc1234.tar.gz",
                   "pod:~/", "--worker=all", "--zone=z1", "--project=p"]  # fmt: skip
    assert ssh[:9] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "pod", "--zone=z1",
                       "--project=p", "--worker=all"]  # fmt: skip
    command = ssh[9].removeprefix("--command=")
    assert bash_syntax_ok(command) and "mnist_jax-abc1234.tar.gz" in command
    no_copy = C.TpuTarget("pod", "z1", copy=False)
    (only,) = C.tpu_commands(SITE, no_copy, "c.py", "w", [], commit="a", tmpdir="/tmp")
    assert only[4] == "ssh" and "tar -xzf" not in only[-1]


def test_tpu_remote_command_runs_with_hostile_paths(tmp_path):
    """Run the remote command in a fake home: the archive holds a launch.sh and a .venv whose
    python records its arguments; everything must arrive exactly as given."""
    home, out = tmp_path / "home", tmp_path / "python.json"
    src = tmp_path / "src"
    (src / ".venv" / "bin").mkdir(parents=True)
    (src / "launch.sh").write_text("#!/bin/sh\nexit 0\n")
    (src / ".venv" / "bin" / "pip").write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/pip.txt\n')
    dump_argv_program(src / ".venv" / "bin" / "python", out)
    for f in ("launch.sh", ".venv/bin/pip"):
        (src / f).chmod(0o755)
    home.mkdir()
    with tarfile.open(home / "mnist_jax-abc.tar.gz", "w:gz") as tar:
        for f in ("launch.sh", ".venv"):
            tar.add(src / f, arcname=f)
    target = C.TpuTarget("pod", "z", remote_dir=HOSTILE, mnist_dir=HOSTILE, heartbeat_timeout=7)
    overrides = ["--config.mlp.hidden_sizes=(64, 64)", "--config.data.dir=$(whoami)"]
    tarball = "mnist_jax-abc.tar.gz"
    remote = C.tpu_remote_command(target, "configs/cnn.py", HOSTILE, overrides, tarball)
    env = dict(os.environ, HOME=str(home))
    result = subprocess.run(["bash", "-c", remote], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "pip.txt").read_text() == "install --quiet jax[tpu]==0.0.0\n"
    got = json.loads(out.read_text())
    assert got["cwd"] == str(home / HOSTILE)
    assert got["argv"] == ["-u", "-m", "mnist_jax.main", "--config=configs/cnn.py",
                           f"--workdir={HOSTILE}", *overrides]  # fmt: skip
    assert got["env"]["MNIST_DIR"] == HOSTILE
    assert got["env"]["MNIST_JAX_DISTRIBUTED"] == "on"
    assert got["env"]["MNIST_JAX_HEARTBEAT_TIMEOUT"] == "7"


def test_tpu_config_path_is_relative_to_the_repository(tmp_path):
    elsewhere = C.Site(PY, ROOT, tmp_path, {})
    assert C.remote_config(elsewhere, f"{ROOT}/configs/cnn.py:quick") == "configs/cnn.py:quick"
    assert C.remote_config(SITE, "configs/cnn.py") == "configs/cnn.py"
    assert C.remote_config(elsewhere, "/elsewhere/c.py") == "/elsewhere/c.py"


def test_compare_is_the_compare_study_run_by_the_sweep():
    command = C.compare_command(SITE, "out", seeds=2, quick=False,
                                overrides=["--config.num_epochs=1"])  # fmt: skip
    assert command.argv == (PY, "-m", "mnist_jax.sweep", "--study=compare",
                            "--output_dir=out", "--seeds=2", "--jobs=1",
                            "--config.num_epochs=1")  # fmt: skip
    assert command.label == "seeds 0-1 of each config, 1 at a time, then their evaluation"
    quick = C.compare_command(SITE, "o", seeds=1, quick=True, overrides=[], jobs=2, dry_run=True)
    assert quick.argv[3:] == ("--study=compare:quick", "--output_dir=o",
                              "--seeds=1", "--jobs=2", "--dry_run")  # fmt: skip
    named = C.compare_command(SITE, "o", seeds=1, quick=False, overrides=[],
                              configs=["mlp_best", "cnn_best"])  # fmt: skip
    assert named.argv[3] == "--study=compare:mlp_best,cnn_best"


def test_compare_from_another_directory_runs_the_shipped_study(tmp_path):
    command = C.compare_command(C.Site(PY, ROOT, tmp_path, {}), "o", seeds=1, quick=False,
                                overrides=[])  # fmt: skip
    assert command.argv[3] == "--study=compare"
    assert configuration.resolve("compare", "study") == str(ROOT / "experiments" / "compare.py")
    assert command.env == {"PYTHONPATH": str(ROOT)}


def test_compare_jobs():
    cpu = min(C.CPU_COMPARE_JOBS, os.cpu_count() or 1)
    assert C.compare_jobs("auto", {"JAX_PLATFORMS": "cpu"}) == cpu
    assert C.compare_jobs("auto", {"JAX_PLATFORMS": "cuda"}) == 1
    assert C.compare_jobs("auto", {}) == cpu  # no GPU/TPU plugin in this environment
    assert C.compare_jobs("3", {}) == 3
    for bad in ("0", "two", "-1"):
        with pytest.raises(UserError, match=f"--jobs={bad!r} is invalid; valid: 'auto' or a"):
            C.compare_jobs(bad, {})


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"seeds": 0}, "--seeds must be >= 1"),
        ({"overrides": ["--config.seed=4"]}, "compare sets config.seed itself"),
        ({"configs": ["mlp", "cnnn"]}, r"cnnn is not a shipped config; valid: cnn, cnn_best, "),
        ({"configs": ["cnn", "cnn"]}, "names a config twice"),
    ],
)
def test_compare_command_rejects(kwargs, message):
    args = {"outdir": "o", "seeds": 1, "quick": False, "overrides": []} | kwargs
    with pytest.raises(UserError, match=message):
        C.compare_command(SITE, args.pop("outdir"), **args)


def test_split_overrides():
    rest, overrides = subcommands.split_overrides(
        ["configs/m.py", "--config.a=1", "w", "--config.b", "2", "--dry_run", "--config.c"]
    )
    assert rest == ["configs/m.py", "w", "--dry_run"]
    assert overrides == ["--config.a=1", "--config.b=2", "--config.c"]


# --- The supervisor, on real processes -------------------------------------------------------


def py(code: str, **kwargs) -> C.Command:
    return C.Command((sys.executable, "-c", code), **kwargs)


def test_supervisor_returns_the_first_failure_and_shows_its_log(tmp_path, caplog):
    log = tmp_path / "logs" / "process_1.log"
    lines = "; ".join(f"print('line {i}')" for i in range(8))
    status = supervisor.run([
        py("import time; time.sleep(0.5)", label="process 0"),
        py(f"{lines}; raise SystemExit(3)", log=log, label="process 1"),
        py("raise SystemExit(4)", label="process 2"),
    ], grace_seconds=30)  # fmt: skip
    assert status in (3, 4)  # whichever failed first
    assert log.read_text().splitlines()[-1] == "line 7"
    assert "process 1 exited with status 3" in caplog.text
    assert "[process 1] line 7" in caplog.text and "line 2" not in caplog.text  # the tail only


def test_supervisor_terminates_survivors_after_the_grace_period():
    start = time.monotonic()
    status = supervisor.run(
        [py("import time; time.sleep(120)"), py("raise SystemExit(2)")], grace_seconds=0.5
    )
    assert status == 2 and time.monotonic() - start < 30


def test_pool_runs_every_command_at_most_jobs_at_once(tmp_path):
    child = ("import sys, time; open(sys.argv[1], 'w').write(f'{time.time()}\\n');"
             "time.sleep(0.6); open(sys.argv[1], 'a').write(f'{time.time()}')")  # fmt: skip
    commands = [C.Command((sys.executable, "-c", child, str(tmp_path / f"{i}.t")),
                          log=tmp_path / "logs" / f"{i}.log") for i in range(5)]  # fmt: skip
    start = time.monotonic()
    assert supervisor.run_pool(commands, 2, poll_seconds=0.05) == 0
    spans = [tuple(map(float, (tmp_path / f"{i}.t").read_text().split())) for i in range(5)]
    at_once = max(sum(a <= t < b for a, b in spans) for t, _ in spans)
    assert at_once == 2
    assert time.monotonic() - start >= 3 * 0.6  # 5 commands, 2 at a time: 3 rounds


def test_pool_starts_nothing_after_a_failure(tmp_path, caplog):
    marker, done = tmp_path / "started", tmp_path / "done"
    status = supervisor.run_pool([
        py(f"import time; time.sleep(0.5); open({str(done)!r}, 'w')", label="slow"),
        py("print('bad input'); raise SystemExit(5)", log=tmp_path / "bad.log", label="bad"),
        py(f"open({str(marker)!r}, 'w')", label="never"),
    ], 2, poll_seconds=0.05)  # fmt: skip
    assert status == 5 and not marker.exists()
    assert "bad exited with status 5" in caplog.text and "[bad] bad input" in caplog.text
    assert done.exists()  # the running one was waited for
    with pytest.raises(UserError, match="--jobs must be >= 1, got 0"):
        supervisor.run_pool([], 0)


DRIVER = """
import sys
from mnist_jax.launcher import commands as C, supervisor
child = "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(120)"
sys.exit(supervisor.run([C.Command((sys.executable, "-c", child, f"{sys.argv[1]}/{i}.pid"))
                         for i in range(3)]))
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_the_launcher_stops_every_process(tmp_path, sig):
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(tmp_path)], cwd=ROOT,
                              env=dict(os.environ, PYTHONPATH=str(ROOT)))  # fmt: skip
    pid_files = [tmp_path / f"{i}.pid" for i in range(3)]
    deadline = time.monotonic() + 60
    while not all(f.exists() and f.read_text() for f in pid_files):
        assert driver.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    driver.send_signal(sig)
    assert driver.wait(timeout=30) == 128 + sig  # the children's status: killed by `sig`
    for f in pid_files:
        with pytest.raises(ProcessLookupError):
            os.kill(int(f.read_text()), 0)


# --- launch.sh -------------------------------------------------------------------------------


def run_sh(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = dict(os.environ, SKIP_SETUP="1", VENV=sys.prefix, MNIST_DIR="/data/mnist")
    return subprocess.run([str(ROOT / "launch.sh"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


SUBCOMMANDS = ["local", "train", "multiprocess", "slurm", "status", "tpu", "compare"]


@pytest.mark.parametrize("cmd", ["setup", "test", "sweep", *SUBCOMMANDS])
def test_help_of_every_subcommand(cmd):
    result = run_sh(cmd, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: ./launch.sh {cmd}"), result.stdout


def test_help_of_a_binary_passed_through():
    result = run_sh("evaluate", "--help")
    assert result.returncode == 0 and "--workdirs" in result.stdout


def test_top_level_help():
    out = run_sh("help").stdout
    for text in ("./launch.sh compare", "./launch.sh test", "./launch.sh train", "slurm", "tpu"):
        assert text in out
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    listing = subprocess.run([sys.executable, "-m", "mnist_jax.launch", "--help"], cwd=ROOT,
                             capture_output=True, text=True, env=env)  # fmt: skip
    assert listing.returncode == 0
    for cmd in SUBCOMMANDS:
        assert f"\n  {cmd} " in listing.stdout


def test_local_and_train_dry_run():
    for cmd in ("local", "train"):
        result = run_sh(cmd, "configs/mlp.py", "runs/m", "--cpu_devices=4", "--dry_run",
                        "--config.num_epochs", "3")  # fmt: skip
        assert result.returncode == 0, result.stderr
        argv = shlex.split(result.stdout)
        assert argv[:3] == ["env", "JAX_PLATFORMS=cpu",
                            "XLA_FLAGS=--xla_force_host_platform_device_count=4"]  # fmt: skip
        assert argv[3] == sys.executable
        assert main_args(argv) == ["--config=configs/mlp.py", "--workdir=runs/m",
                                   "--config.num_epochs=3"]  # fmt: skip


def test_multiprocess_dry_run():
    result = run_sh("multiprocess", "2", "configs/mlp.py", "runs/m", "--dry_run", "--port=1234",
                    "--heartbeat_timeout=15", "--config.num_epochs=3")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert bash_syntax_ok(result.stdout)
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "mkdir -p runs/m/logs" and lines[-1] == "wait"
    procs = [shlex.split(line) for line in lines[1:-1]]
    assert [p[-1] for p in procs] == ["&", "&"] and procs[1][-4:-1] == [
        ">", "runs/m/logs/process_1.log", "2>&1"]  # fmt: skip
    for i, argv in enumerate(procs):
        assert {f"MNIST_JAX_PROCESS_ID={i}", "MNIST_JAX_COORDINATOR=localhost:1234",
                "MNIST_JAX_HEARTBEAT_TIMEOUT=15"} <= set(argv)  # fmt: skip


def test_slurm_dry_run():
    result = run_sh("slurm", "configs/cnn.py", "/shared/runs/cnn", "--nodes=2",
                    "--gpus_per_node", "4", "--partition=gpu", "--dry_run")  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "# /shared/runs/cnn/slurm_job.sbatch"
    assert lines[-2] == "# submit with:"
    assert shlex.split(lines[-1]) == slurm.sbatch(
        Path("/shared/runs/cnn/slurm_job.sbatch"), "/shared/runs/cnn/slurm-%j.out"
    )
    script = "\n".join(lines[1:-2])
    assert "#SBATCH --nodes=2" in script and "#SBATCH --gpus-per-node=4" in script
    assert "export MNIST_DIR=/data/mnist" in script and bash_syntax_ok(script)


def test_tpu_dry_run():
    result = run_sh("tpu", "configs/cnn.py", "/mnt/runs/cnn", "--name=pod", "--zone=z1",
                    "--remote_dir=my dir", "--dry_run", "--config.num_epochs=1")  # fmt: skip
    assert result.returncode == 0, result.stderr
    archive, scp, ssh = (shlex.split(line) for line in result.stdout.strip().splitlines())
    assert archive[:4] == ["git", "-C", str(ROOT), "archive"] and scp[4] == "scp"
    assert ssh[4:6] == ["ssh", "pod"]
    command = ssh[-1].removeprefix("--command=")
    assert "cd \"$HOME\"/'my dir' &&" in command and command.endswith("--config.num_epochs=1")


def test_compare_dry_run_from_another_directory(tmp_path):
    result = run_sh("compare", "--quick", "--seeds=1", "--jobs=2", "--dry_run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    header, command, *trials, summary = result.stdout.strip().splitlines()
    assert header == "# seeds 0-0 of each config, 2 at a time, then their evaluation"
    assert "--study=compare:quick" in shlex.split(command)
    assert [line.split() for line in trials] == [
        ["1/2", "pending", "mlp/seed_0"], ["2/2", "pending", "cnn/seed_0"],
    ]  # fmt: skip
    assert summary == ("study compare_quick: 2 trials, 0 done, in runs/compare_quick/, then one "
                       "evaluation of them all")  # fmt: skip
    assert not (tmp_path / "runs").exists()


def test_compare_on_slurm_dry_run_prints_the_worker_array_and_the_final_job(tmp_path):
    result = run_sh("compare", "out", "--quick", "--slurm", "--workers=3", "--gpus_per_node=1",
                    "--time=02:00:00", "--dry_run", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    command = shlex.split(result.stdout.splitlines()[1])
    assert command[command.index("--slurm") :] == [
        "--slurm", "--workers=3", "--gpus_per_node=1", "--cpus_per_task=2", "--time=02:00:00",
        "--job_name=mnist_jax", "--signal_seconds=120", "--requeue", "--dry_run",
    ]  # fmt: skip
    text = result.stdout
    assert text.count("#SBATCH --gpus-per-node=1") == 2 and "XLA_FLAGS" not in text
    *_, array, after = text.strip().splitlines()
    assert shlex.split(array)[-2:] == ["--array=0-2", "out/logs/slurm_workers.sbatch"]
    assert "--dependency=afterany:<array job id>" in shlex.split(after)
    assert '--jobs=3 --worker="$SLURM_ARRAY_TASK_ID"' in text
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (("nosuch",), "unknown command 'nosuch'"),
        (("slurm", "configs/cnn.py"), "slurm takes CONFIG WORKDIR, got configs/cnn.py"),
        (("slurm", "configs/cnn.py", "w", "--time=soon", "--dry_run"), "--time must look like"),
        (("slurm", "configs/cnn.py", "w", "--node=2"), "did you mean --nodes?"),
        (
            ("slurm", "configs/cnn.py", "w", "--gpus_per_node=1", "--cpu_devices=2"),
            "--cpu_devices=2 is for CPU-only jobs",
        ),
        (("compare", "--slurm", "--time=1", "--dry_run"), "--signal_seconds=120 is not shorter"),
        (("tpu", "configs/cnn.py", "w", "--dry_run"), "--name=TPU and --zone=ZONE"),
        (("multiprocess", "two", "configs/mlp.py", "w"), "positive integer, got 'two'"),
        (("multiprocess", "2", "configs/mlp.py", "w", "--cpu_devices=0"), "--cpu_devices=0"),
        (
            ("local", "nope.py", "w", "--dry_run"),
            "CONFIG 'nope.py': no such file or shipped config; shipped: cnn,",
        ),
        (
            ("local", "mpl:quick", "w", "--dry_run"),
            "'mpl:quick': no such file or shipped config; did you mean 'mlp'?",
        ),
        (("compare", "--seeds=x"), "'x' is not an integer"),
        (("compare", "--configs=mlp,nope", "--dry_run"), "nope is not a shipped config; valid: "),
        (("sweep", "experiments/dropout.py"), "sweep takes STUDY OUTDIR"),
        (  # the sweep's own one line; the launcher adds none
            ("compare", "--quick", "--dry_run", "--config.num_epochs=abc"),
            "--config.num_epochs=abc: flag --config.num_epochs=abc: invalid literal",
        ),
    ],
)
def test_bad_arguments_exit_1_with_one_line(args, message):
    result = run_sh(*args)
    assert result.returncode == 1, result.stderr
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
