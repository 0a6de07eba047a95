"""The benchmark binary runs end to end on a tiny setting and writes its JSON and markdown.

The speed targets themselves are judged by `python -m mnist_jax.benchmark` (benchmarks/
RESULTS.md), not by timed tests: timings on a shared CPU are not reproducible enough to assert.
"""

import json
import os
import re
import subprocess
import sys

import pytest

from mnist_jax.benchmarks import speed
from mnist_jax.core import configuration
from mnist_jax.core.errors import ConfigError
from mnist_jax.training import validation
from tests.conftest import ROOT, run_module


def test_speedrun_configs_have_targets_and_build():
    for name in speed.TARGETS:
        config = configuration.load(name)
        assert config.data.validation_fraction == 0.0  # all 60,000 training images
        validation.validate(config)


def test_benchmarked_configs_are_validated_as_training_validates_them(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from mnist_jax.configs import mlp\n\n"
        "def get_config():\n    config = mlp.get_config()\n    config.num_epochs = 0\n"
        "    return config\n"
    )
    with pytest.raises(ConfigError, match="num_epochs"):
        speed.load_config(str(bad), tiny=False)
    config = speed.load_config("configs/cnn.py", tiny=True, layer_keys={"conv_impl": "xla"},
                               batch_size=16)  # fmt: skip
    assert (config.batch_size, config.layers.conv_impl, config.num_epochs) == (16, "xla", 1)


GPU_CHECK_STEPS = ("setup", "devices", "tests", "benchmark", "train_mlp", "train_cnn", "evaluate")


def _gpu_check(out, **env):
    env = dict(os.environ, VENV=sys.prefix, PYTHONPATH=str(ROOT), **env)
    return subprocess.run([str(ROOT / "benchmarks" / "gpu" / "check.sh"), str(out)], env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip


def test_the_gpu_check_dry_run_lists_every_step_with_flags_its_binaries_define(tmp_path):
    """DRY_RUN=1: the steps as they would run on a GPU, each flag of each mnist_jax binary one
    that the binary's --helpfull lists (--config.* overrides aside)."""
    result = _gpu_check(tmp_path / "check", DRY_RUN="1")
    assert result.returncode == 0, result.stderr
    steps = dict(line[3:].split(": ", 1) for line in result.stderr.splitlines()
                 if line.startswith("== "))  # fmt: skip
    assert list(steps) == ["setup", "install_cuda_jax", "nvidia_smi", *GPU_CHECK_STEPS[1:]]
    assert "jax[cuda12]==" in steps["install_cuda_jax"]
    binaries = {}
    for name in ("benchmark", "train_mlp", "train_cnn", "evaluate"):
        words = steps[name].split()
        assert words[1] == "-m" and words[2].startswith("mnist_jax."), steps[name]
        binaries.setdefault(words[2], set()).update(
            w[2:].split("=")[0] for w in words[3:] if w.startswith("--") and "config." not in w
        )
    for module, used in binaries.items():
        helpfull = run_module(module, "--helpfull").stdout
        defined = set(re.findall(r"^\s+--(?:\[no\])?(\w+)", helpfull, re.MULTILINE))
        assert used <= defined, (module, used - defined)


@pytest.mark.slow  # every step at smoke-test size, about 25 s on 2 cores
def test_the_gpu_check_runs_every_step_on_the_cpu(tmp_path, mnist_dir):
    """benchmarks/gpu/check.sh with CHECK_CPU=1 (smoke-test sizes, this venv, no wheels): every
    step runs and succeeds, so the script a GPU machine runs has not rotted."""
    out = tmp_path / "check"
    result = _gpu_check(out, CHECK_CPU="1")
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line.split("\t") for line in (out / "steps.tsv").read_text().splitlines()[1:]]
    assert [(r[0], r[1]) for r in rows] == [(name, "0") for name in GPU_CHECK_STEPS]
    assert json.loads((out / "benchmark" / "benchmark.json").read_text())["throughput"]
    comparison = json.loads((out / "comparison" / "comparison.json").read_text())
    assert sorted(comparison["models"]) == ["cnn", "mlp"]
