"""1 vs 8 devices, pmap vs shard_map, and the 'tree' reduction's bitwise equality on any device
count (simulated CPU devices; each run in a subprocess, since the device count is fixed at
start-up).

The tree tests run the main configs as they ship (augmentation, dropout, the CNN's weight
average) and the CNN with BatchNorm, on a few percent of the data. `MNIST_JAX_DETERMINISM=full`
runs them at the size docs/determinism.md records: 2 epochs on 30% of the training set.
CI runs the tree test natively and again under `XLA_FLAGS=--xla_cpu_max_isa=AVX2` (.ci/run).
"""

import json
import os

import pytest

from tests.conftest import run_code, run_module

pytestmark = pytest.mark.multidevice

FULL = os.environ.get("MNIST_JAX_DETERMINISM") == "full"


def _train(tmp_path, devices: int, mode: str) -> tuple[list[float], dict]:
    workdir = tmp_path / f"{devices}_{mode}"
    out = run_module(
        "mnist_jax.main", "--config=configs/mlp.py", f"--workdir={workdir}",
        "--config.num_epochs=1", "--config.data.train_fraction=0.05",
        "--config.mlp.hidden_sizes=256,256",  # the recipe's width adds only time here
        f"--config.parallel.mode={mode}", devices=devices,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    losses = [json.loads(line)["train_loss"] for line in (workdir / "metrics.jsonl").open()]
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["num_devices"] == devices and summary["parallel_mode"] == mode
    return losses, summary


def test_same_numbers_on_one_and_eight_devices_in_both_modes(tmp_path, mnist_dir):
    """The MLP config (dropout, random shifts) at width 256, one epoch on 5% of the data, 'mean'
    reduction: the same global batches, masks and shifts on 1 and 8 devices. pmap and shard_map
    run the same per-device program, so they agree bitwise; 1 device differs from 8 by the order
    of float sums."""
    one, one_summary = _train(tmp_path, 1, "pmap")
    pmap, pmap_summary = _train(tmp_path, 8, "pmap")
    shard_map, shard_map_summary = _train(tmp_path, 8, "shard_map")
    assert pmap == shard_map
    assert pmap_summary["test_accuracy"] == shard_map_summary["test_accuracy"]
    assert abs(one[0] - pmap[0]) < 1e-4, (one, pmap)
    assert abs(one_summary["test_accuracy"] - pmap_summary["test_accuracy"]) <= 0.0015


# Trains one of configs/mlp.py, configs/cnn.py (as shipped), the CNN with BatchNorm and its NNX
# twin with the 'tree' reduction and prints every number of metrics.jsonl and summary.json and a
# digest of the best variables. argv: run name (TREE_CONFIGS), train_fraction, num_epochs,
# parallel mode.
TREE_RUNS = """
import hashlib, json, sys, tempfile
import jax, numpy as np
from mnist_jax.core import configuration
from mnist_jax.configs import default
from mnist_jax.evaluation import runs
from mnist_jax.training import train

name, fraction, epochs, mode = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
path, keys = {
    "mlp": ("configs/mlp.py", {}),
    "cnn": ("configs/cnn.py", {}),
    "cnn_bn": ("configs/cnn.py", {"cnn.batch_norm": True}),  # one ghost batch per shard
    "cnn_nnx_bn": ("configs/cnn_nnx.py", {"cnn_nnx.batch_norm": True}),  # the NNX CNN
}[name]

def digest(tree):
    h = hashlib.sha256()
    for leaf in jax.tree.leaves(tree):
        h.update(np.ascontiguousarray(leaf).tobytes())
    return h.hexdigest()

config = configuration.load(path)
config.data.train_fraction, config.num_epochs = fraction, epochs
config.parallel.reduction, config.parallel.mode = "tree", mode
config.test_every_epochs = 1  # per-epoch test metrics, compared too
for key, value in keys.items():
    default.set_key(config, key, value)
with tempfile.TemporaryDirectory() as workdir:
    summary = train.train_and_evaluate(config, workdir)
    run = runs.open_run(workdir)
    variables = runs.restore_best(run, runs.build_model(run.config))
numbers = lambda r: {k: v for k, v in r.items() if k.endswith(("_loss", "_accuracy", "epoch"))}
print(json.dumps({
    "variables": digest(variables),
    "metrics": [numbers(r) for r in run.metrics],
    "summary": numbers(summary),
}))
"""
TREE_CONFIGS = ("mlp", "cnn", "cnn_bn", "cnn_nnx_bn")


def _tree_run(name: str, devices: int, mode: str) -> dict:
    fraction, epochs = ("0.3", "2") if FULL else ("0.03", "1")
    out = run_code(TREE_RUNS, name, fraction, epochs, mode, devices=devices)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "name",
    # The main configs are `determinism` tests (CI: natively and under AVX2); of the BatchNorm
    # variants, which compute the same statistics (layers.batch_statistics), the NNX one runs in
    # the default set, natively, the Linen one in the slow set.
    [
        pytest.param("mlp", marks=pytest.mark.determinism),
        pytest.param("cnn", marks=pytest.mark.determinism),
        pytest.param("cnn_bn", marks=pytest.mark.slow),
        "cnn_nnx_bn",
    ],
)
def test_tree_reduction_is_bitwise_equal_on_1_2_and_8_devices(name, mnist_dir):
    """8 tree shards: all on one device, four per device, one per device; pmap and shard_map.
    Every loss and accuracy in metrics.jsonl and summary.json, and the best variables, are the
    same bits."""
    results = {
        (1, "pmap"): _tree_run(name, 1, "pmap"),
        (2, "shard_map"): _tree_run(name, 2, "shard_map"),
        (8, "pmap"): _tree_run(name, 8, "pmap"),
    }
    reference = results[(1, "pmap")]
    last, summary = reference["metrics"][-1], reference["summary"]
    # Shown with -s; docs/determinism.md quotes them.
    print(f"{name}: epoch {last['epoch']} val loss {last['val_loss']!r}", end=" ")
    print(f"test accuracy {summary['test_accuracy']} variables {reference['variables'][:16]}")
    assert {"train_loss", "val_loss", "test_loss", "test_accuracy"} <= last.keys()
    assert summary["test_accuracy"] > 0.1, name  # trained, not a constant
    for key, result in results.items():
        assert result == reference, key
