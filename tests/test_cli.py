"""cli.run: every binary answers --help with exit 0 and a bad command line with one line.

Each case runs a real binary in a subprocess; all of them fail (or print help) before any data
is loaded.
"""

import ast
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, run_module

SYNTAX_ERROR = "import ml_collections\n\ndef get_config(:\n    pass\n"
RAISES_ON_IMPORT = "import os\nraise RuntimeError('no GPU here')\n"
REJECTS_VARIANT = (
    "from mnist_jax.core.errors import ConfigError\n\n"
    "def get_config(variant=''):\n"
    "    raise ConfigError(f'unknown variant {variant!r}; valid: quick')\n"
)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The binary's single stderr line, checked to be a clean one-line error with status 1."""
    assert result.returncode == 1, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr and "FATAL" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.fixture
def config_file(tmp_path):
    def write(text: str) -> str:
        path = tmp_path / "my_config.py"
        path.write_text(text)
        return str(path)

    return write


MAIN = ("--config=configs/mlp.py", "--workdir=unused")


CASES = [  # (arguments of mnist_jax.main, texts its error line must contain)
    (("--nosuch=1", *MAIN), ["unknown flag --nosuch", "valid:", "--workdir"]),
    (("--config=configs/mlp.py", "--workdr=w"), ["--workdr", "did you mean --workdir?"]),
    ((*MAIN, "--confg.num_epochs=3"), ["did you mean --config.num_epochs?"]),
    ((*MAIN, "--num_processes=two"), ["--num_processes=two", "'two' is not an integer"]),
    ((*MAIN, "--distributed=maybe"), ["--distributed=maybe", "auto|on|off"]),
    ((*MAIN, "--heartbeat_timeout"), ["--heartbeat_timeout needs a value"]),
    (("--workdir=w",), ["missing required flag --config"]),
    (("--config=configs/mlpp.py", "--workdir=w"), ["mlpp.py", "did you mean configs/mlp.py?"]),
    (("--config=missing.py", "--workdir=w"), ["missing.py", "no such file or shipped config",
                                              "shipped: cnn, cnn_best"]),
    (("--config=mpl:quick", "--workdir=w"), ["--config=mpl:quick", "did you mean 'mlp'?"]),
    (("--config=cnn:nosuchvariant", "--workdir=w"), ["--config=cnn:nosuchvariant: unknown"]),
    ((*MAIN, "--config.nosuchkey=1"), ["no key 'nosuchkey'", "valid keys", "num_epochs"]),
    ((*MAIN, "--config.num_epoch=3"), ["'num_epoch'", "did you mean 'num_epochs'?"]),
    ((*MAIN, "--config.optimiser.learning_rate=1"), ["did you mean 'optimizer.learning_rate'?"]),
    ((*MAIN, "--config.num_epochs=abc"), ["'abc' is not an integer, e.g. --config.num_epochs=12"]),
    ((*MAIN, "--config.optimizer.learning_rate=fast"), ["'fast' is not a number"]),
    (("--config=configs/cnn.py:nosuchvariant", "--workdir=w"), ["configs/cnn.py:nosuchvariant: "]),
    ((*MAIN, "extra"), ["unexpected arguments: extra"]),
]  # fmt: skip


@pytest.mark.parametrize("args, expected", CASES)
def test_bad_command_line_is_one_line(args, expected):
    line = one_error_line(run_module("mnist_jax.main", *args, timeout=120))
    for text in expected:
        assert text in line, line


@pytest.mark.parametrize(
    "text, expected",
    [
        (SYNTAX_ERROR, ["my_config.py line 3: SyntaxError"]),
        (RAISES_ON_IMPORT, ["my_config.py line 2: RuntimeError: no GPU here"]),
    ],
)
def test_broken_config_file_is_one_line_naming_file_and_line(config_file, text, expected):
    path = config_file(text)
    line = one_error_line(run_module("mnist_jax.main", f"--config={path}", "--workdir=w"))
    assert line.startswith(f"error: --config={path}: "), line
    for part in expected:
        assert part in line, line


def test_config_error_from_get_config_comes_through_verbatim(config_file):
    path = config_file(REJECTS_VARIANT)
    line = one_error_line(run_module("mnist_jax.main", f"--config={path}:fast", "--workdir=w"))
    assert line == f"error: --config={path}:fast: unknown variant 'fast'; valid: quick"


@pytest.mark.parametrize(
    "module, args, expected",
    [
        ("mnist_jax.evaluate", ("--workdirs=a", "--output_dir=o", "--latency_calls=many"),
         "--latency_calls=many: 'many' is not an integer"),
        ("mnist_jax.sweep", ("--output_dir=o",), "missing required flag --study"),
        ("mnist_jax.benchmark", ("--seedz=3",), "unknown flag --seedz; did you mean --seeds?"),
    ],
)  # fmt: skip
def test_other_binaries_give_one_line_errors(module, args, expected):
    line = one_error_line(run_module(module, *args, timeout=120))
    assert expected in line, line


@pytest.mark.parametrize(
    "module, flag",
    [("main", "--help"), ("main", "-h"), ("evaluate", "--help"), ("sweep", "--helpshort"),
     ("benchmark", "--help"), ("serve", "--help"), ("export", "--help"), ("predict", "-h")],
)  # fmt: skip
def test_help_is_the_docstring_and_flags_on_stdout_with_status_0(module, flag):
    result = run_module(f"mnist_jax.{module}", flag, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    # Read, not imported: binaries define their flags at import, and several share flag names.
    docstring = ast.get_docstring(ast.parse((ROOT / "mnist_jax" / f"{module}.py").read_text()))
    assert result.stdout.startswith(docstring.strip().splitlines()[0])
    assert "\nflags:\n" in result.stdout and f"mnist_jax.{module}:" in result.stdout
    assert "--verbosity" not in result.stdout  # absl's own flags only with --helpfull


def test_helpfull_lists_absl_flags_too():
    result = run_module("mnist_jax.main", "--helpfull", timeout=120)
    assert result.returncode == 0
    assert "--config" in result.stdout and "--verbosity" in result.stdout


# The child first sets SIGINT up as a terminal would deliver it: a test worker's thread may have
# it blocked or ignored, both of which survive exec, and then Ctrl-C never arrives.
INTERRUPTIBLE = """
import signal, sys, time
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
signal.signal(signal.SIGINT, signal.default_int_handler)
from mnist_jax.core import cli

def main(argv):
    print("ready", flush=True)
    time.sleep(60)

cli.run(main)
"""


def _signal_masks(pid: int) -> str:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    return " ".join(line for line in status if line.startswith(("SigBlk", "SigIgn", "SigCgt")))


def test_ctrl_c_is_one_line_and_status_130():
    proc = subprocess.Popen(
        [sys.executable, "-c", INTERRUPTIBLE], cwd=ROOT, text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout.readline() == "ready\n"
    masks = _signal_masks(proc.pid)
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    try:
        _, stderr = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"no exit 30 s after SIGINT; child's signal masks: {masks}") from None
    assert proc.returncode == 130
    assert stderr == "interrupted\n"
