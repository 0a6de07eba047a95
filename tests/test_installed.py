"""The package as a user installs it: a wheel built from this checkout (`pip install .`, not
editable) in a fresh venv, its console scripts run from a directory outside the repository.

A shipped config or study by name (`cnn:quick`, `dropout:reduced`), the main job
(`mnist-jax-launch compare --quick --seeds=1`), the benchmark, predict, export and the
provenance of what they write must work there as in the checkout. The venv holds the wheel
alone: a .pth line puts this test environment's site-packages after its own, so that the
dependencies (the same versions, installed by `launch.sh setup`) need not be installed again.
"""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import ROOT
from PIL import Image

from mnist_jax.data import load_dataset
from tests import events, readme
from tests.test_evaluate import third_party_warnings, tiny_config

# One worker builds the venv and runs these in order (--dist loadgroup).
pytestmark = pytest.mark.xdist_group("installed")

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A venv with the wheel of this checkout installed; the source copied first, so that the
    build leaves nothing (build/, *.egg-info) in the checkout."""
    tmp = tmp_path_factory.mktemp("installed")
    source = tmp / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source)
    for name in ("mnist_jax", "configs", "experiments"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    _check([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", tmp / "dist", source])
    (wheel,) = (tmp / "dist").glob("mnist_jax-*.whl")
    venv = tmp / "venv"
    _check([sys.executable, "-m", "venv", "--without-pip", venv])
    own = _check([venv / "bin" / "python", "-c", "import sysconfig as s; print(s.get_paths()"
                  "['purelib'])"]).stdout.strip()  # fmt: skip
    ours = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    Path(own, "_test_dependencies.pth").write_text("\n".join(ours) + "\n")
    # --ignore-installed: the checkout's own editable install lies on the .pth path too.
    _check([*pip, "--python", venv / "bin" / "python", "install", "--no-deps", "--no-index",
            "--ignore-installed", wheel])  # fmt: skip
    return venv


@pytest.fixture(scope="module")
def elsewhere(tmp_path_factory) -> Path:
    """The working directory of every command: no configs/ or experiments/ beside it."""
    return tmp_path_factory.mktemp("user")


def _check(argv: list) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the checkout: not here
    result = subprocess.run(
        [str(a) for a in argv], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def run(venv: Path, cwd: Path, command: str, *args: str) -> subprocess.CompletedProcess:
    """A console script of the venv (or its python) as a user runs it: no PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [str(venv / "bin" / command), *args], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=900,
    )  # fmt: skip


def test_the_installed_wheel_is_what_runs(venv, elsewhere):
    code = (
        "import mnist_jax\n"
        "from mnist_jax.core import configuration as c\n"
        "print(mnist_jax.__file__, mnist_jax.__version__)\n"
        "print(c.resolve('cnn:quick'), c.resolve('dropout', 'study'))"
    )
    result = run(venv, elsewhere, "python", "-c", code)
    assert result.returncode == 0, result.stderr
    (package, version), (config, study) = (line.split() for line in result.stdout.splitlines())
    site = next((venv / "lib").glob("python3.*/site-packages"))
    assert Path(package).parent.parent == site and version == VERSION
    assert config == f"{site}/mnist_jax/configs/cnn.py:quick"
    assert study == f"{site}/mnist_jax/experiments/dropout.py"
    assert (site / "mnist_jax" / "serving" / "page.html").is_file()  # package data travels too
    scripts = set(PYPROJECT["project"]["scripts"])
    assert scripts <= {p.name for p in (venv / "bin").iterdir()}


@pytest.fixture(scope="module")
def compared(venv, elsewhere, mnist_dir) -> tuple[Path, subprocess.CompletedProcess]:
    """`mnist-jax-train --config=cnn:quick` into the CNN's run of a comparison, then the main
    job, `mnist-jax-launch compare --quick --seeds=1`, which trains the MLP beside it."""
    out = elsewhere / "compare"
    trained = run(venv, elsewhere, "mnist-jax-train", "--config=cnn:quick",
                  f"--workdir={out / 'cnn' / 'seed_0'}")  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-3000:]
    return out, run(venv, elsewhere, "mnist-jax-launch", "compare", str(out), "--quick",
                    "--seeds=1", "--jobs=1")  # fmt: skip


def test_compare_quick_end_to_end(venv, elsewhere, compared):
    """The README's first command, shortened: trains both models, evaluates (the reuse of a
    finished comparison by a rerun: test_evaluate.py, in the checkout)."""
    out, result = compared
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Study compare_quick: 2 trials, 1 already done, 1 to run" in result.stderr
    data = json.loads((out / "comparison.json").read_text())
    assert {m: v["test_count"] for m, v in data["models"].items()} == {"mlp": 10_000, "cnn": 10_000}
    assert all((out / f).stat().st_size > 10_000 for f in data["figures"].values())
    assert set(data["quantization"]["models"]) == {"mlp", "cnn"}  # the main job evaluates int8 too
    assert "int8" in (out / "report.md").read_text()
    robust = data["robustness"]["corruptions"]  # --quick: 2 of the 12 corruptions
    assert [c["name"] for c in robust] == ["gaussian_noise", "rotate"]
    # TensorBoard: >= 10 train-loss points an epoch in every run; the figures as images.
    for model in ("mlp", "cnn"):
        run_dir = out / model / "seed_0"
        first = (run_dir / "metrics.jsonl").read_text().splitlines()[0]
        steps_per_epoch = json.loads(first)["step"]
        points = events.scalars(run_dir / "tensorboard")["train/loss"]
        assert min(events.points_per_epoch(points, steps_per_epoch).values()) >= 10
    assert sorted(events.load(out / "tensorboard").Tags()["images"]) == sorted(data["figures"])
    # Training output: on the console with --jobs=1 (one run left to train, so no workers).
    assert "Test accuracy" in result.stderr
    assert not third_party_warnings(result.stdout + result.stderr)
    # The README's reader of comparison.json, as written, on this comparison.
    code = readme.block("Read comparison.json").replace("runs/compare/", f"{out}/")
    printed = run(venv, elsewhere, "python", "-c", code)
    assert printed.returncode == 0, printed.stderr
    mean = data["models"]["mlp"]["accuracy"]["mean"]
    assert printed.stdout.splitlines()[0].startswith(f"mlp {mean}")


def test_results_name_the_installed_version_and_no_commit(compared):
    """An installed package is no checkout: its results name its version, and no git commit
    (not even that of a repository the venv happens to lie in)."""
    out, _ = compared
    summary = json.loads((out / "cnn" / "seed_0" / "summary.json").read_text())
    environment = json.loads((out / "comparison.json").read_text())["environment"]
    for provenance in (summary, environment):  # summary.json holds it at the top level
        assert provenance["versions"]["mnist_jax"] == VERSION
        assert provenance["git_commit"] is None
    assert f"mnist_jax {VERSION}." in (out / "report.md").read_text()


def test_predict_and_export_a_run_of_the_installed_package(venv, elsewhere, compared):
    out, _ = compared
    run_dir = out / "cnn" / "seed_0"
    test = load_dataset(tiny_config("mlp").data).test
    digit = elsewhere / "digit.png"
    Image.fromarray(255 - test.images[0]).resize((112, 112)).save(digit)  # black on white
    result = run(venv, elsewhere, "mnist-jax-predict", f"--workdirs={run_dir}", str(digit))
    assert result.returncode == 0, result.stderr[-3000:]
    (line,) = [line for line in result.stdout.splitlines() if "digit.png" in line]
    assert int(line.split()[1]) == test.labels[0], result.stdout  # the most probable class
    exported = elsewhere / "cnn.jaxexport"
    result = run(venv, elsewhere, "mnist-jax-export", f"--workdir={run_dir}",
                 f"--output={exported}")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    # The artifact needs JAX alone: this process's JAX runs it.
    artifact = jax.export.deserialize(exported.read_bytes())
    predicted = np.asarray(artifact.call(test.images[:64])).argmax(-1)
    assert np.mean(predicted == test.labels[:64]) > 0.8


def test_benchmark_tiny_writes_every_section(venv, elsewhere, mnist_dir):
    """`mnist-jax-benchmark --tiny` from outside the repository, on one config of each section
    (the speed targets themselves are judged by the full benchmark, benchmarks/RESULTS.md)."""
    out = elsewhere / "bench"
    # Throughput and inference of one config; time to accuracy is left to the full benchmark.
    one_each = ("--throughput_configs=mlp", "--speedrun_configs=")
    result = run(venv, elsewhere, "mnist-jax-benchmark", "--tiny", f"--output_dir={out}", *one_each)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "benchmark.json").read_text())
    forms = {(r["config"], r["form"]) for r in report["throughput"]}
    assert forms == {("mlp", "default")}  # no convolutions: no naive form
    for r in report["throughput"]:
        assert r["batch"] == 32 and r["images_per_second"] > 0 and r["compile_seconds"] > 0
        assert r["flops_per_image"] > 0 and 0 < r["fraction_of_matmul"] < 10
    assert report["cnn_speedup"] is None  # the CNN's im2col speed-up needs the CNN timed
    assert report["time_to_accuracy"] == []
    assert {r["config"] for r in report["inference"]} == {"mlp"}
    machine = report["machine"]
    assert machine["cpu_model"] and machine["versions"]["mnist_jax"] == VERSION
    # The CPU kind the numbers hold for: model, AVX-512 or not, and the machine's sgemm speed.
    assert machine["cpu"]["model"] == machine["cpu_model"] and machine["sgemm_gflops"] > 1
    assert isinstance(machine["cpu"]["avx512"], bool)
    text = (out / "benchmark.md").read_text()
    assert "Training throughput" in text
    assert f"{machine['sgemm_gflops']:.0f} GFLOP/s sgemm" in text


def test_a_shipped_study_by_name_and_the_launcher_by_config_name(venv, elsewhere):
    result = run(venv, elsewhere, "mnist-jax-sweep", "--study=dropout:reduced", "--dry_run")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "study dropout_reduced: 12 trials, 0 done, in runs/dropout_reduced/" in result.stdout
    assert not (elsewhere / "runs").exists()
    result = run(venv, elsewhere, "mnist-jax-launch", "local", "mlp:quick", "runs/l", "--dry_run")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[:2] == [str(venv / "bin" / "python"), "-m"]  # no PYTHONPATH
    assert "--config=mlp:quick" in result.stdout.split()
    # A misspelt name lists the shipped ones there too (test_cli, test_sweep and test_launch
    # check each binary's message in the checkout).
    result = run(venv, elsewhere, "mnist-jax-launch", "local", "mpl:quick", "w")
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert "'mpl:quick': no such file or shipped config; did you mean 'mlp'?" in result.stderr
    assert not (elsewhere / "w").exists()


def test_every_console_script_answers_help(venv, elsewhere):
    for script in ("mnist-jax-evaluate", "mnist-jax-serve"):  # the others run above
        result = run(venv, elsewhere, script, "--help")
        assert result.returncode == 0 and "flags:" in result.stdout, (script, result.stderr)
