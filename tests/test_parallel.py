"""pmap vs shard_map vs one device, on 8 simulated CPU devices (each run in a subprocess)."""

import json

import pytest

from tests.conftest import run_module

pytestmark = pytest.mark.multidevice


def _train(tmp_path, devices: int, mode: str) -> tuple[list[float], dict]:
    workdir = tmp_path / f"{devices}_{mode}"
    out = run_module(
        "mnist_jax.main", "--config=configs/mlp.py", f"--workdir={workdir}",
        "--config.num_epochs=2", "--config.data.train_fraction=0.2",
        f"--config.parallel.mode={mode}", devices=devices,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    losses = [json.loads(line)["train_loss"] for line in (workdir / "metrics.jsonl").open()]
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["num_devices"] == devices and summary["parallel_mode"] == mode
    return losses, summary


def test_same_numbers_on_one_and_eight_devices_in_both_modes(tmp_path, mnist_dir):
    """The MLP config (dropout, random shifts) for two epochs: the same global batches, masks and
    shifts on 1 and 8 devices. pmap and shard_map run the same per-device program, so they agree
    bitwise; 1 device differs from 8 only by the order of float sums (see README)."""
    one, one_summary = _train(tmp_path, 1, "pmap")
    pmap, pmap_summary = _train(tmp_path, 8, "pmap")
    shard_map, shard_map_summary = _train(tmp_path, 8, "shard_map")
    assert pmap == shard_map
    assert pmap_summary["test_accuracy"] == shard_map_summary["test_accuracy"]
    assert one[1] < one[0]
    for a, b in zip(one, pmap, strict=True):
        assert abs(a - b) < 1e-4, (one, pmap)
    assert abs(one_summary["test_accuracy"] - pmap_summary["test_accuracy"]) <= 0.0015
