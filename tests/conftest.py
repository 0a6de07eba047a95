"""Shared fixtures. Tests run on the real MNIST files: $MNIST_DIR, else the download cache."""

import os
import sys
from pathlib import Path

import forkserver
import pytest

from mnist_jax.launcher.commands import xla_flags_with_devices

ROOT = Path(__file__).resolve().parents[1]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--slow",
        action="store_true",
        help="also run the tests marked slow (left out unless -m or a test id names them)",
    )


@pytest.hookimpl(trylast=True)  # after pytest-xdist has named each test's group
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The default run (README, CI) leaves out the slow tests: they repeat, end to end and at
    larger sizes, what faster tests check piece by piece. `--slow`, any `-m` expression, or a
    test named by its id (file::name) selects them."""
    if getattr(config.option, "loadgroup", False):  # an xdist worker under --dist loadgroup
        for item in items:
            if item.get_closest_marker("xdist_group") and "@" not in item.nodeid:
                raise pytest.UsageError(
                    f"pytest-xdist did not group {item.nodeid} (--dist loadgroup): its fixtures "
                    "would be built on every worker; install the pytest that pyproject.toml allows"
                )
    items[:] = _longest_first(items)
    if config.getoption("--slow") or config.getoption("markexpr"):
        return
    if any("::" in arg for arg in config.args):
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not item.get_closest_marker("slow")]


# The test groups that run longest (one worker each, --dist loadgroup), first: they start on
# both workers at once instead of one of them ending the run alone.
LONG_GROUPS = ("installed", "evaluate", "slurm", "faults", "train", "robustness_study")


def _group(item: pytest.Item) -> str | None:
    marker = item.get_closest_marker("xdist_group")
    return (marker.args[0] if marker.args else marker.kwargs.get("name")) if marker else None


def _longest_first(items: list[pytest.Item]) -> list[pytest.Item]:
    """The long groups first, then the tests that start multi-device subprocesses (the longest
    single tests), two others between each two of them: xdist hands out work in this order and
    queues up to three tests on a worker, so the long ones start early on different workers
    instead of ending a run alone."""
    grouped = [item for g in LONG_GROUPS for item in items if _group(item) == g]
    items = [item for item in items if _group(item) not in LONG_GROUPS]
    long = [item for item in items if item.get_closest_marker("multidevice")]
    rest = [item for item in items if not item.get_closest_marker("multidevice")]
    order: list[pytest.Item] = list(grouped)
    for item in long:
        order += [item, *rest[:2]]
        del rest[:2]
    return order + rest


def pytest_configure(config: pytest.Config) -> None:
    """Tests compile the same small programs many times, in this process and in subprocesses:
    JAX's persistent compilation cache (platform.py) makes every repeat a load."""
    from mnist_jax.core import platform

    platform.enable_compilation_cache(platform._COMPILATION_CACHE.default)


@pytest.fixture(scope="session")
def mnist_dir() -> str:
    """The directory of the four real MNIST files; downloads them only if MNIST_DIR is unset."""
    from mnist_jax.data import sources

    path = str(sources.resolve_data_dir(""))
    for filename, sha in sources.FILES.values():
        sources.verify_file(Path(path) / filename, sha)
    os.environ["MNIST_DIR"] = path  # for subprocesses started by the tests
    return path


def run_module(
    module: str, *args: str, devices: int = 1, timeout: float = 600, fresh: bool = False, **env: str
):
    """`python -m module args...` with `devices` simulated CPU devices, as a fork of a process that
    has imported the libraries already (tests/forkserver.py); `fresh`: a new interpreter."""
    return _run([sys.executable, "-m", module, *args], devices, timeout, env, fresh)


def run_code(
    code: str, *args: str, devices: int = 1, timeout: float = 600, fresh: bool = False, **env: str
):
    """`python -c code args...` with `devices` simulated CPU devices, like `run_module`."""
    return _run([sys.executable, "-c", code, *args], devices, timeout, env, fresh)


def _run(argv: list[str], devices: int, timeout: float, env: dict[str, str], fresh: bool):
    environ = dict(os.environ, **env)
    # Other XLA flags (the AVX2 leg of .ci/run: --xla_cpu_max_isa=AVX2) reach the child too.
    environ["XLA_FLAGS"] = xla_flags_with_devices(devices, environ.get("XLA_FLAGS", ""))
    environ["PYTHONPATH"] = str(ROOT)
    return forkserver.shared.run(argv, environ, timeout, fresh=fresh)


def train_two_processes(workdir: Path, *flags: str, config: str = "configs/mlp.py") -> None:
    """`launch.sh multiprocess 2` of a config, 2 CPU devices per process, shard_map."""
    result = run_module("mnist_jax.launch", "multiprocess", "2", config, str(workdir),
                        "--cpu_devices=2", *flags, "--config.parallel.mode=shard_map")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]


def small_config(**overrides: object):
    """configs/mlp.py at 256-256 on 10% of the training split, 3 epochs: a second an epoch on a
    2-core CPU (the recipe's own 1024-1024 adds nothing the tests look at but time). Its 42 steps
    an epoch are 7 chunks of 6: one train program to compile, where the automatic 5 would need
    two. The training and logbook tests share it, and so its compiled programs (the
    persistent cache); `overrides` are dotted keys, e.g. small_config(**{"num_epochs": 1})."""
    from mnist_jax.configs import default, mlp

    config = mlp.get_config()
    for key, value in {"mlp.hidden_sizes": (256, 256), "data.train_fraction": 0.1,
                       "steps_per_chunk": 6, "num_epochs": 3, **overrides}.items():  # fmt: skip
        default.set_key(config, key, value)
    return config


# Runs good enough to classify real digits (~98% and ~99% test accuracy): the speedrun configs,
# shared by the export and predict tests and trained once per test session (a few seconds of
# training each on a 2-core CPU, plus compilation).
STRONG = {"mlp": "configs/speedrun_mlp.py", "cnn": "configs/speedrun.py"}


@pytest.fixture(scope="session")
def strong_runs(mnist_dir, tmp_path_factory) -> dict[str, Path]:
    from mnist_jax.core import configuration
    from mnist_jax.training import train

    root = tmp_path_factory.mktemp("strong_runs")
    for name, spec in STRONG.items():
        config = configuration.load(str(ROOT / spec))
        config.test_every_epochs = 0
        train.train_and_evaluate(config, str(root / name))
    return {name: root / name for name in STRONG}
