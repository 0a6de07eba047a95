"""Run the project's binaries many times, cheaply: forked from a process that has imported them.

The fault-injection tests start a binary some sixty times. A fresh `python -m` imports JAX, Flax
and Orbax each time (2-4 s on a busy 2-core machine, most of a bad input's cost). A
`ForkServer` is one helper process that imports those libraries once, never touching a device,
and then forks a child per command, in which `runpy` runs the binary's module exactly as
`python -m module args` would (its own sys.argv, `__main__`, flags parsed afresh, exit status).
Each child is an ordinary process with its own pid: it writes stdout and stderr to files and a
test may signal or kill it.

Usage:
    with ForkServer(env) as server:
        child = server.start("mnist_jax.main", ["--config=...", ...], out_dir)
        ...                             # poll its files, os.kill(child.pid, ...)
        status = server.wait(child)     # the exit status; -N when killed by signal N
"""

import atexit
import contextlib
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mnist_jax.training import faults

ROOT = Path(__file__).resolve().parents[1]

# The helper process: imports the libraries, then serves one JSON request per line on stdin.
_SERVER = r"""
import atexit, json, os, runpy, sys, time, traceback
import jax, flax, optax, orbax.checkpoint, ml_collections  # noqa: F401  (the slow imports)
from mnist_jax.core import cli, platform  # noqa: F401
from mnist_jax.training import train  # noqa: F401
from mnist_jax.evaluation import runner  # noqa: F401
from mnist_jax.studies import runner as study_runner  # noqa: F401

def child(request):
    if request.get("replace_env"):
        os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    fd = os.open(os.devnull, os.O_RDONLY)
    os.dup2(fd, 0)
    for target, name in ((1, "stdout"), (2, "stderr")):
        fd = os.open(request[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, target)
    code = request.get("code")
    sys.argv = ["-c" if code is not None else request["module"], *request["args"]]
    status = 0
    try:
        if code is not None:  # python -c code args...
            exec(compile(code, "<string>", "exec"), {"__name__": "__main__"})
        else:
            runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            status = e.code or 0
        else:
            print(e.code, file=sys.stderr)
            status = 1
    except BaseException:
        traceback.print_exc()
        status = 1
    try:
        atexit._run_exitfuncs()  # what an interpreter exit runs
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)

def wait(pid, timeout):
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status), False
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), True
        time.sleep(0.02)

for line in sys.stdin:
    request = json.loads(line)
    if request["op"] == "start":
        pid = os.fork()
        if pid == 0:
            child(request)
        reply = {"pid": pid}
    else:
        status, timed_out = wait(request["pid"], request["timeout"])
        reply = {"status": status, "timed_out": timed_out}
    print(json.dumps(reply), flush=True)
"""


@dataclasses.dataclass
class Child:
    pid: int
    stdout_path: Path
    stderr_path: Path

    @property
    def stderr(self) -> str:
        return _read(self.stderr_path)

    @property
    def stdout(self) -> str:
        return _read(self.stdout_path)


def _read(path: Path) -> str:
    """The file's text so far ('' before the child has created it)."""
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


class ForkServer:
    """One helper process; `start` forks a child per command (see the module docstring)."""

    def __init__(self, env: dict[str, str]):
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _SERVER],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._count = 0
        self._running: set[int] = set()

    def _ask(self, request: dict) -> dict:
        self._proc.stdin.write(json.dumps(request) + "\n")
        self._proc.stdin.flush()
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the fork server exited with status {self._proc.wait()}")
        return json.loads(line)

    def start(
        self,
        module: str,
        args: list[str],
        out_dir: Path,
        env: dict[str, str] | None = None,
        *,
        code: str | None = None,
        replace_env: bool = False,
    ) -> Child:
        """Starts `python -m module args` (or `python -c code args`) as a fork; its stdout and
        stderr go to files in out_dir. `env` updates the server's environment, or replaces it."""
        self._count += 1
        out_dir.mkdir(parents=True, exist_ok=True)
        name = f"{self._count:03d}_{module.rsplit('.', 1)[-1]}"
        stdout, stderr = out_dir / f"{name}.stdout", out_dir / f"{name}.stderr"
        reply = self._ask({
            "op": "start", "module": module, "args": list(map(str, args)), "env": env or {},
            "replace_env": replace_env, "code": code,
            "cwd": str(ROOT), "stdout": str(stdout), "stderr": str(stderr),
        })  # fmt: skip
        self._running.add(reply["pid"])
        return Child(reply["pid"], stdout, stderr)

    def wait(self, child: Child, timeout: float = 300) -> int:
        """The child's exit status (-N if killed by signal N); kills it after `timeout` s."""
        reply = self._ask({"op": "wait", "pid": child.pid, "timeout": timeout})
        self._running.discard(child.pid)
        if reply["timed_out"]:
            raise TimeoutError(f"{child} ran longer than {timeout} s:\n{child.stderr[-3000:]}")
        return reply["status"]

    def wait_for(self, child: Child, text: str, timeout: float = 120) -> None:
        """Polls the child's stderr until `text` appears (fails if the child ends first)."""
        deadline = time.monotonic() + timeout
        while text not in child.stderr:
            try:
                os.kill(child.pid, 0)
                ended = _is_zombie(child.pid)
            except ProcessLookupError:
                ended = True
            if ended or time.monotonic() > deadline:
                raise AssertionError(f"never saw {text!r}:\n{child.stderr[-3000:]}")
            time.sleep(0.05)

    def close(self) -> None:
        for pid in list(self._running):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
            self.wait(Child(pid, Path(), Path()), timeout=30)
        self._proc.stdin.close()
        self._proc.wait(timeout=30)

    def __enter__(self) -> "ForkServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return True


# Environment variables that the libraries (JAX_*) or mnist_jax's flag defaults (MNIST_JAX_*) read
# when they are imported: a fork inherits the server's values, so a command that needs others
# runs as a real process. MNIST_JAX_TEST_FAULT is read at each fault point, so a fork sees it.
_READ_AT_IMPORT = ("JAX_", "MNIST_JAX_", "XLA_PYTHON_", "TF_CPP_")


def _read_at_import(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith(_READ_AT_IMPORT) and k != faults.ENV}


class SharedServer:
    """`python -m`/`-c` commands of the tests, forked from one server per test process.

    A fresh interpreter spends about 2 s of CPU importing JAX, Flax and Orbax before a binary
    does anything; the suite starts over a hundred of them. A fork of the server runs the same
    command with the same argv, environment (XLA_FLAGS included: the server never creates a JAX
    backend, so each child reads its own device count and ISA limit), working directory and exit
    status, and costs about 50 ms.
    """

    def __init__(self) -> None:
        self._server: ForkServer | None = None
        self._env: dict[str, str] = {}
        self._out = Path(tempfile.mkdtemp(prefix="forks_"))
        atexit.register(shutil.rmtree, self._out, ignore_errors=True)

    def run(
        self, argv: list[str], env: dict[str, str], timeout: float, *, fresh: bool = False
    ) -> subprocess.CompletedProcess:
        """What `subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)`
        returns, for argv = [python, '-m', module, *args] or [python, '-c', code, *args].
        `fresh` runs a new interpreter (for a test of what importing does)."""
        if fresh or (self._server and _read_at_import(env) != _read_at_import(self._env)):
            return subprocess.run(
                argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
            )
        if self._server is None:
            self._env = dict(env)
            self._server = ForkServer(self._env)
            atexit.register(self._server.close)
        flag, target, *args = argv[1:]
        module, code = ("-c", target) if flag == "-c" else (target, None)
        child = self._server.start(module, args, self._out, env, code=code, replace_env=True)
        try:
            status = self._server.wait(child, timeout=timeout)
        except TimeoutError:
            raise subprocess.TimeoutExpired(argv, timeout, child.stdout, child.stderr) from None
        result = subprocess.CompletedProcess(argv, status, child.stdout, child.stderr)
        child.stdout_path.unlink(missing_ok=True)
        child.stderr_path.unlink(missing_ok=True)
        return result


shared = SharedServer()
