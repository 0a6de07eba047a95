"""pmap vs shard_map vs one device, on 8 simulated CPU devices (each run in a subprocess)."""

import json

import numpy as np
import pytest

from tests.conftest import run_module

pytestmark = pytest.mark.multidevice


def _losses(mode: str, devices: int, dropout: float, num_steps: int) -> list[float]:
    out = run_module("tests.parallel_probe", mode, str(dropout), str(num_steps), devices=devices)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["devices"] == devices
    return result["losses"]


def test_pmap_and_shard_map_are_the_same_program(mnist_dir):
    """Same per-device step, same layout: bitwise-identical losses, dropout included."""
    pmap = _losses("pmap", 8, 0.2, 40)
    shard_map = _losses("shard_map", 8, 0.2, 40)
    assert pmap == shard_map


def test_eight_devices_match_one_device_step_by_step(mnist_dir):
    """Same global batches and dropout masks on 1 and 8 devices: the losses of the first steps
    agree to float rounding (later, reassociated sums make trajectories drift apart slowly)."""
    one = _losses("pmap", 1, 0.2, 30)
    eight = _losses("shard_map", 8, 0.2, 30)
    np.testing.assert_allclose(eight, one, rtol=0, atol=1e-5)
    assert one[-1] < one[0] * 0.5  # and it is training
