"""The public Python API: the README's example as written, configs, names, logging, commands."""

import os
import re
import subprocess
import sys
import tomllib

import ml_collections
import pytest

import mnist_jax
from mnist_jax import api, scripts
from mnist_jax.core.errors import ConfigError
from tests import readme
from tests.conftest import ROOT, run_code

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def readme_example() -> str:
    """The ```python block of README.md's "Train one model" section."""
    return readme.block("Train one model")


@pytest.mark.slow
def test_readme_example_runs_from_another_directory(mnist_dir, tmp_path):
    """Trains configs/mlp.py:quick (a shipped config, by name), loads it, predicts."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), MNIST_DIR=mnist_dir)
    result = subprocess.run(
        [sys.executable, "-c", readme_example()], cwd=tmp_path, env=env, capture_output=True,
        text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    version, accuracy, predictions, files = result.stdout.strip().splitlines()
    assert version == PYPROJECT["project"]["version"]
    assert 0.7 < float(accuracy.removeprefix("test accuracy ")) <= 1  # 1 epoch on 10%
    name, probs_argmax, predicted, labels = re.fullmatch(
        r"(\S+) \[([\d ]+)\] \[([\d ]+)\] \[([\d ]+)\]", predictions
    ).groups()
    assert name == "api_demo" and probs_argmax == predicted
    assert sum(a == b for a, b in zip(predicted.split(), labels.split(), strict=True)) >= 6
    assert files == "[7]"  # the first test digit, through a PNG file
    assert (tmp_path / "runs/api_demo/summary.json").is_file()
    # Logging is on by default from Python: progress, compilation, results.
    assert "Compiling the train program" in result.stderr and "Test accuracy" in result.stderr


def test_version_is_the_distribution_version():
    assert mnist_jax.__version__ == PYPROJECT["project"]["version"]


def test_importing_the_package_does_not_import_jax():
    code = "import sys, mnist_jax; print('jax' in sys.modules, mnist_jax.__version__)"
    result = run_code(code, fresh=True)
    assert result.stdout.split()[0] == "False", result.stderr


def test_configs_by_name_path_and_configdict():
    by_name = api.load_config("cnn:quick")
    assert by_name.model == "cnn" and by_name.num_epochs == 1
    by_path = api.load_config(ROOT / "configs" / "mlp.py", variant="quick")
    assert by_path.model == "mlp" and by_path.data.train_fraction == 0.1
    mine = api.load_config("mlp")
    quick = api.load_config(mine, variant="quick")
    assert quick.num_epochs == 1  # the caller's config is untouched:
    assert mine.num_epochs == api.load_config("mlp").num_epochs > 1
    with pytest.raises(ConfigError, match="names a variant and variant='quick' too"):
        api.load_config("mlp:quick", variant="quick")
    with pytest.raises(ConfigError, match="config 'mpl': no such file or shipped config; did you"
                       " mean 'mlp'"):  # fmt: skip
        api.load_config("mpl")
    with pytest.raises(
        ConfigError,
        match="config 'vit': no such file or shipped config; shipped: cnn, cnn_best, cnn_nnx, ",
    ):
        api.load_config("vit")
    with pytest.raises(ConfigError, match="expected an ml_collections ConfigDict"):
        api.load_config({"model": "mlp"})
    assert isinstance(api.load_config("default"), ml_collections.ConfigDict)


def test_run_names_keep_seed_directories_apart(tmp_path):
    assert api.run_name(tmp_path / "runs" / "cnn_wide") == "cnn_wide"
    assert api.run_name(tmp_path / "compare" / "mlp" / "seed_2") == "mlp/seed_2"


LOGGING = """
from absl import logging
from mnist_jax.core import logs
logs.default_to_info()
logging.info("shown by default")
logs.log_to_stderr("warning")
logs.default_to_info()  # the caller's choice stands
logging.info("hidden after log_to_stderr('warning')")
logging.warning("warnings still shown")
with logs.heartbeat("a slow call", every=0.2, done=True):
    import time; time.sleep(0.5)
logs.log_to_stderr("info")
with logs.heartbeat("a slow call", every=0.2, done=True):
    time.sleep(1.5)
"""


def test_logging_from_python_is_on_by_default_and_can_be_quieted():
    result = run_code(LOGGING)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert "WARNING: Logging before flag parsing" not in result.stderr
    assert [line.split("] ", 1)[1] for line in lines if "shown" in line] == [
        "shown by default", "warnings still shown",
    ]  # fmt: skip
    beats = [line.split("] ", 1)[1] for line in lines if "a slow call" in line]
    assert len(beats) >= 2  # all from the second call, none from the first (level warning)
    assert re.fullmatch(r"a slow call: \d+\.\d s", beats[-1]), beats
    assert all(re.fullmatch(r"a slow call: running for \d s", b) for b in beats[:-1]), beats
    assert all(re.match(r"[IW]\d{4} ", line) for line in lines)  # absl's format, nothing else


def test_console_scripts_run_the_binaries():
    declared = PYPROJECT["project"]["scripts"]
    for command, target in declared.items():
        module, _, function = target.partition(":")
        assert module == "mnist_jax.scripts" and hasattr(scripts, function), command
    binaries = {p.stem for p in (ROOT / "mnist_jax").glob("*.py") if "cli.run(" in p.read_text()}
    functions = [getattr(scripts, target.partition(":")[2]) for target in declared.values()]
    named = {function.__doc__.split(".")[-1] for function in functions}
    assert named == binaries  # every binary has a command, and every command a binary
    result = run_code(
        "import sys; sys.argv = ['mnist-jax-predict', '--help']\n"
        "from mnist_jax import scripts; scripts.predict()"
    )
    assert result.returncode == 0 and result.stdout.startswith("Classify digit images")
    assert "mnist_jax.predict:" in result.stdout and "--workdirs" in result.stdout


def test_every_package_directory_is_installed():
    packages = set(PYPROJECT["tool"]["setuptools"]["packages"])
    inits = (ROOT / "mnist_jax").rglob("__init__.py")
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in inits}
    mapped = PYPROJECT["tool"]["setuptools"]["package-dir"]
    assert mapped == {"mnist_jax.configs": "configs", "mnist_jax.experiments": "experiments"}
    assert all((ROOT / folder / "__init__.py").is_file() for folder in mapped.values())
    assert on_disk | set(mapped) == packages
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    assert "Apache License" in (ROOT / "LICENSE").read_text()
