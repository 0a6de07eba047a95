"""pmap vs shard_map, and the 'tree' reduction's bitwise equality on any device and process
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

from tests.conftest import run_code, run_module, train_two_processes

pytestmark = pytest.mark.multidevice

FULL = os.environ.get("MNIST_JAX_DETERMINISM") == "full"
# Under an emulated instruction set (CI's AVX2 leg) the reduced-size test runs less: the flag
# changes only XLA's generated loops, not the kernel libraries (docs/determinism.md). It runs
# the CNN case, whose program has every kind of loop the MLP's has (the same augmentation, dense
# layers, dropout, Adam's update, the tree sum) and more, on 1, 2 and 8 devices (8, 4 and 1
# shards per device); the 2x2 plan adds gloo's transport, which the native run checks. The full
# size (MNIST_JAX_DETERMINISM=full) runs every case and plan.
EMULATED_ISA = "--xla_cpu_max_isa" in os.environ.get("XLA_FLAGS", "")


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


def test_pmap_and_shard_map_give_the_same_numbers_on_eight_devices(tmp_path, mnist_dir):
    """The MLP config (dropout, random shifts) at width 256, one epoch on 5% of the data, 'mean'
    reduction: pmap and shard_map run the same per-device program, so they agree bitwise. (One
    device against eight: the tree test below.)"""
    pmap, pmap_summary = _train(tmp_path, 8, "pmap")
    shard_map, shard_map_summary = _train(tmp_path, 8, "shard_map")
    assert pmap == shard_map
    assert pmap_summary["test_accuracy"] == shard_map_summary["test_accuracy"] > 0.5  # trained


# Trains a config file with key overrides (argv: the file, the overrides as JSON) and prints
# every number of metrics.jsonl and summary.json and a digest of the best variables; with a third
# argument, a run directory trained elsewhere with that config, only reads it.
TREE_RUNS = """
import hashlib, json, sys, tempfile
import jax, numpy as np
from mnist_jax.core import configuration
from mnist_jax.configs import default
from mnist_jax.evaluation import runs
from mnist_jax.training import train

config = configuration.load(sys.argv[1])
for key, value in json.loads(sys.argv[2]).items():
    default.set_key(config, key, value)

def digest(tree):
    h = hashlib.sha256()
    for leaf in jax.tree.leaves(tree):
        h.update(np.ascontiguousarray(leaf).tobytes())
    return h.hexdigest()

with tempfile.TemporaryDirectory() as scratch:
    if len(sys.argv) > 3:
        workdir = sys.argv[3]
        summary = json.loads(open(workdir + "/summary.json").read())
    else:
        workdir = scratch
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
TREE_CASES = {  # config file, overrides
    "mlp": ("configs/mlp.py", {}),
    "cnn": ("configs/cnn.py", {}),
    "cnn_bn": ("configs/cnn.py", {"cnn.batch_norm": True}),  # one ghost batch per shard
    "cnn_nnx_bn": ("configs/cnn_nnx.py", {"cnn_nnx.batch_norm": True}),  # the NNX CNN
    "cnn_rbg": ("configs/cnn.py", {"prng_impl": "rbg"}),  # XLA's RngBitGenerator draws
}
# The runs of each case: (devices, parallel mode) in one process, or TWO_BY_TWO: `launch.sh
# multiprocess 2` with 2 devices per process (shard_map), read back in one process.
TWO_BY_TWO = (4, "2 processes x 2 devices")
ONE_TWO_EIGHT = ((1, "pmap"), (2, "shard_map"), (8, "pmap"))
TREE_PLANS = {
    # At the reduced size the MLP runs 1 device (pmap) against 8 (shard_map): the CNN case runs
    # the same tree sum on 1, 2 and 8 devices and 2 processes (docs/determinism.md).
    "mlp": ONE_TWO_EIGHT if FULL else ((1, "pmap"), (8, "shard_map")),
    "cnn": (*ONE_TWO_EIGHT, TWO_BY_TWO),
    "cnn_bn": ONE_TWO_EIGHT,
    "cnn_nnx_bn": ((1, "pmap"), (8, "shard_map")),
    "cnn_rbg": ((1, "pmap"), (8, "shard_map")),
}


def _tree_run(name: str, plan: tuple[int, str], tmp_path) -> dict:
    fraction, epochs = (0.3, 2) if FULL else (0.03, 1)
    path, keys = TREE_CASES[name]
    devices, mode = plan
    keys = {"data.train_fraction": fraction, "num_epochs": epochs, "parallel.reduction": "tree",
            "test_every_epochs": 1,  # per-epoch test metrics, compared too
            "parallel.mode": "shard_map" if plan == TWO_BY_TWO else mode, **keys}  # fmt: skip
    if plan == TWO_BY_TWO:
        workdir = tmp_path / "two_by_two"
        flags = [f"--config.{key}={value}" for key, value in keys.items()]
        train_two_processes(workdir, *flags, config=path)
        out = run_code(TREE_RUNS, path, json.dumps(keys), str(workdir))
    else:
        out = run_code(TREE_RUNS, path, json.dumps(keys), devices=devices)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "name",
    # The main configs are `determinism` tests (CI: natively and under AVX2); of the BatchNorm
    # variants, which compute the same statistics (layers.batch_statistics), the NNX one runs in
    # the default set, natively, the Linen one in the slow set, as does the CNN drawing its
    # random numbers with prng_impl='rbg'.
    [
        pytest.param("mlp", marks=pytest.mark.determinism),
        pytest.param("cnn", marks=pytest.mark.determinism),
        pytest.param("cnn_bn", marks=pytest.mark.slow),
        pytest.param("cnn_rbg", marks=pytest.mark.slow),
        "cnn_nnx_bn",
    ],
)
def test_tree_reduction_is_bitwise_equal_on_any_device_and_process_count(name, mnist_dir, tmp_path):
    """8 tree shards: all on one device, four per device, one per device (pmap and shard_map);
    for the CNN also 2 processes of 2 devices (natively; EMULATED_ISA). Every loss and accuracy
    in metrics.jsonl and summary.json, and the best variables, are the same bits as on one
    device."""
    reduced_emulation = EMULATED_ISA and not FULL
    if reduced_emulation and name == "mlp":
        pytest.skip("under an emulated ISA at the reduced size, the CNN case covers the MLP's")
    plans = [p for p in TREE_PLANS[name] if not (reduced_emulation and p == TWO_BY_TWO)]
    results = {plan: _tree_run(name, plan, tmp_path) for plan in plans}
    reference = results[(1, "pmap")]
    last, summary = reference["metrics"][-1], reference["summary"]
    # Shown with -s; docs/determinism.md quotes them.
    print(f"{name}: epoch {last['epoch']} val loss {last['val_loss']!r}", end=" ")
    print(f"test accuracy {summary['test_accuracy']} variables {reference['variables'][:16]}")
    assert {"train_loss", "val_loss", "test_loss", "test_accuracy"} <= last.keys()
    assert summary["test_accuracy"] > 0.1, name  # trained, not a constant
    for plan, result in results.items():
        assert result == reference, plan
