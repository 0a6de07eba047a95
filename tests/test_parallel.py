"""1 vs 8 devices, pmap vs shard_map, and the 'tree' reduction's bitwise equality on any device
count (8 simulated CPU devices; each run in a subprocess, since the device count is fixed at
start-up)."""

import json

import pytest

from tests.conftest import run_code, run_module

pytestmark = pytest.mark.multidevice


def _train(tmp_path, devices: int, mode: str) -> tuple[list[float], dict]:
    workdir = tmp_path / f"{devices}_{mode}"
    out = run_module(
        "mnist_jax.main", "--config=configs/mlp.py", f"--workdir={workdir}",
        "--config.num_epochs=1", "--config.data.train_fraction=0.2",
        f"--config.parallel.mode={mode}", devices=devices,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    losses = [json.loads(line)["train_loss"] for line in (workdir / "metrics.jsonl").open()]
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["num_devices"] == devices and summary["parallel_mode"] == mode
    return losses, summary


def test_same_numbers_on_one_and_eight_devices_in_both_modes(tmp_path, mnist_dir):
    """The MLP config (dropout, random shifts), one epoch on 20% of the data: the same global
    batches, masks and shifts on 1 and 8 devices. pmap and shard_map run the same per-device
    program, so they agree bitwise; 1 device differs from 8 by the order of float sums."""
    one, one_summary = _train(tmp_path, 1, "pmap")
    pmap, pmap_summary = _train(tmp_path, 8, "pmap")
    shard_map, shard_map_summary = _train(tmp_path, 8, "shard_map")
    assert pmap == shard_map
    assert pmap_summary["test_accuracy"] == shard_map_summary["test_accuracy"]
    assert abs(one[0] - pmap[0]) < 1e-4, (one, pmap)
    assert abs(one_summary["test_accuracy"] - pmap_summary["test_accuracy"]) <= 0.0015


# Trains tiny versions of the MLP, CNN and ResNet configs (dropout, shifts, BatchNorm) with the
# 'tree' reduction and prints a digest of each run's final variables and metrics.
TREE_RUNS = """
import hashlib, json, sys, tempfile
import jax, numpy as np
from mnist_jax import configuration
from mnist_jax.evaluation import runs
from mnist_jax.training import train

def digest(tree):
    h = hashlib.sha256()
    for leaf in jax.tree.leaves(tree):
        h.update(np.ascontiguousarray(leaf).tobytes())
    return h.hexdigest()

tiny = {
    "mlp": {"mlp.hidden_sizes": (64, 64)},
    "cnn": {"cnn.channels": (8, 16), "cnn.dense": (32,), "cnn.batch_norm": False},  # BN: resnet
    "resnet": {"resnet.stage_channels": (16, 32)},
}
out = {}
for name, keys in tiny.items():
    config = configuration.load(f"configs/{name}.py")
    config.data.train_fraction, config.num_epochs = 0.02, 1
    config.parallel.reduction, config.parallel.cpu_kernels = "tree", "stable"
    if name == "resnet":
        config.resnet.blocks = (1, 1)
    for key, value in keys.items():
        section, leaf = key.split(".")
        config[section][leaf] = value
    with tempfile.TemporaryDirectory() as workdir:
        summary = train.train_and_evaluate(config, workdir)
        run = runs.open_run(workdir)
        variables = runs.restore_best(run, runs.build_model(run.config))
        metrics = run.metrics
    out[name] = {
        "variables": digest(variables),
        "metrics": [[r[k] for k in ("train_loss", "train_accuracy", "val_loss")] for r in metrics],
        "test": [summary["test_loss"], summary["test_accuracy"]],
    }
print(json.dumps(out))
"""


def test_tree_reduction_is_bitwise_equal_on_1_2_and_8_devices(mnist_dir):
    """8 tree shards: all on one device, four per device, one per device."""
    results = {}
    for devices in (1, 2, 8):
        out = run_code(TREE_RUNS, devices=devices)
        assert out.returncode == 0, out.stderr[-3000:]
        results[devices] = json.loads(out.stdout.strip().splitlines()[-1])
    for devices in (2, 8):
        assert results[devices] == results[1], devices
    assert results[1]["mlp"]["variables"] != results[1]["cnn"]["variables"]
