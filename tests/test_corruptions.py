"""MNIST-C style corruptions on real digits: exact identity at severity 0, keys per example, and
the effect each corruption claims (one compiled program per corruption, reused across tests)."""

import jax
import numpy as np
import pytest
import scipy.ndimage

from mnist_jax.core.errors import ConfigError
from mnist_jax.data import corruption_augment, corruptions, load_mnist
from mnist_jax.data.augment import AugmentSpec

NAMES = list(corruptions.CORRUPTIONS)
MNIST_C = [
    "shot_noise", "impulse_noise", "glass_blur", "motion_blur", "shear", "scale", "rotate",
    "brightness", "translate", "stripe", "fog", "spatter", "dotted_line", "zigzag", "canny_edges",
]  # fmt: skip


@pytest.fixture(scope="module")
def digits(mnist_dir):
    _, test = load_mnist(mnist_dir)
    return np.asarray(test.images[:12])


def corrupt(digits, name, **kwargs):
    """The first 8 test digits (one batch shape, so one compiled program per corruption)."""
    return np.asarray(corruptions.corrupt(digits[:8], name, **kwargs))


def _total_variation(images):
    x = images.astype(np.float64)
    return np.abs(np.diff(x, axis=1)).sum(axis=(1, 2)) + np.abs(np.diff(x, axis=2)).sum(axis=(1, 2))


def _centre_of_mass(image):
    return np.array(scipy.ndimage.center_of_mass(image.astype(np.float64)))


def test_registry_covers_mnist_c_and_documents_every_severity():
    assert set(MNIST_C) <= set(NAMES) and len(NAMES) >= 20
    for name, c in corruptions.CORRUPTIONS.items():
        assert c.name == name and c.unit and "\n" not in c.unit
        assert 0 < c.default_severity <= c.max_severity


@pytest.mark.parametrize("name", NAMES)
def test_corruption_contract(digits, name):
    out = corrupt(digits, name)
    assert out.dtype == np.uint8 and out.shape == (8, 28, 28)
    assert (out != digits[:8]).any(axis=(1, 2)).all(), "the default must change every digit"
    assert np.array_equal(corrupt(digits, name), out)  # deterministic
    assert np.array_equal(corrupt(digits, name, severity=0.0), digits[:8])  # bitwise identity
    # Digits 4..7 again, now first in a batch with other neighbours: their keys come from their
    # index in the split, so they are corrupted exactly as before.
    later = np.asarray(corruptions.corrupt(digits[4:12], name, start=4))
    assert np.array_equal(later[:4], out[4:])


def test_grid_and_batches_of_one_give_the_split_images(digits):
    """A batch of one (the grid) and a batch of eight: identical images (batch-size independence),
    for corruptions using random draws, a per-image reduction, filters and gathers."""
    names = ("gaussian_noise", "contrast", "elastic")
    tiles = corruptions.grid(digits[5], index=5, names=names)
    assert list(tiles) == list(names)
    for name in names:
        assert tiles[name].shape == (28, 28) and tiles[name].dtype == np.uint8
        assert np.array_equal(tiles[name], corrupt(digits, name)[5]), name


def test_seed_changes_random_corruptions_only(digits):
    assert not np.array_equal(
        corrupt(digits, "gaussian_noise", seed=1), corrupt(digits, "gaussian_noise")
    )
    assert np.array_equal(corrupt(digits, "scale", seed=1), corrupt(digits, "scale"))


def test_geometry_rotate_translate_scale(digits):
    quarter = corrupt(digits, "rotate", severity=90.0)  # a random sign per digit
    for before, after in zip(digits, quarter, strict=False):
        turns = [np.array_equal(after, np.rot90(before, k)) for k in (1, 3)]
        assert any(turns)

    moved = corrupt(digits, "translate", severity=3.0)  # a random sign per axis and digit
    shifts = []
    for before, after in zip(digits, moved, strict=False):
        padded = np.pad(before, 3)
        copies = [padded[3 - dy : 31 - dy, 3 - dx : 31 - dx] for dy in (-3, 3) for dx in (-3, 3)]
        assert any(np.array_equal(after, c) for c in copies)  # integer shifts copy pixels
        shifts.append(np.abs(_centre_of_mass(after) - _centre_of_mass(before)))
    np.testing.assert_allclose(np.median(shifts, axis=0), [3.0, 3.0], atol=0.3)

    smaller = corrupt(digits, "scale")  # default: 0.7 times the size
    for before, after in zip(digits, smaller, strict=False):
        assert (after > 64).sum() < 0.7 * (before > 64).sum()


def test_intensity_noise_and_blur_do_what_they_say(digits):
    clean = digits[:8].astype(np.float64)
    background = digits[:8] == 0

    assert corrupt(digits, "brightness").mean() - clean.mean() > 100  # +0.5 of full scale
    assert np.all(corrupt(digits, "contrast").std(axis=(1, 2)) < 0.4 * clean.std(axis=(1, 2)))
    assert corrupt(digits, "gaussian_noise")[background].std() > 30  # std 0.3, clipped at 0
    salt = (corrupt(digits, "impulse_noise")[background] == 255).mean()
    assert 0.06 < salt < 0.11  # half of the 17 % replaced pixels are white
    assert corrupt(digits, "fog")[background].mean() > 20

    for name in ("gaussian_blur", "motion_blur", "glass_blur"):
        assert np.all(_total_variation(corrupt(digits, name)) < _total_variation(clean)), name

    assert np.all(corrupt(digits, "dilate").sum(axis=(1, 2)) > clean.sum(axis=(1, 2)))
    assert np.all(corrupt(digits, "erode").sum(axis=(1, 2)) < clean.sum(axis=(1, 2)))


def test_occlusions_edges_and_stripes(digits):
    for name in ("dotted_line", "zigzag"):
        out = corrupt(digits, name)
        assert np.all(out >= digits[:8]) and np.all((out > digits[:8]).sum(axis=(1, 2)) > 10), name
    edges = corrupt(digits, "canny_edges")
    assert set(np.unique(edges)) == {0, 255}
    stripes = corrupt(digits, "stripe")
    assert np.array_equal(stripes[:, :, 7:21], digits[:8, :, 7:21])
    assert np.array_equal(stripes[:, :, :7], 255 - digits[:8, :, :7])


def test_names_and_severities_are_validated(digits):
    with pytest.raises(ConfigError, match="unknown corruption 'blurr'; valid: gaussian_noise, "):
        corruptions.corrupt(digits, "blurr")
    for bad in (-1.0, float("nan"), 181.0):
        with pytest.raises(ConfigError) as error:
            corruptions.corrupt(digits, "rotate", severity=bad)
        message = str(error.value)
        assert "\n" not in message and repr(bad) in message and "[0, 180.0]" in message
    with pytest.raises(ValueError, match="uint8"):
        corruptions.corrupt(digits.astype(np.float32), "rotate")


def test_parse_names():
    assert corruptions.parse_names("all") == NAMES
    assert corruptions.parse_names("none") == []
    assert corruptions.parse_names(" rotate, fog,rotate ") == ["rotate", "fog"]
    with pytest.raises(ConfigError, match=r"'fgo'.*'all', 'none'"):
        corruptions.parse_names("rotate,fgo")


def test_training_corruption_is_per_example_and_keeps_the_rest_clean(digits):
    """corruption_augment.augment: each output is a function of (image, key) alone; about
    corruption_prob of the examples change, the others are returned as they were."""
    augment = jax.jit(corruption_augment.augment, static_argnums=2)  # as inside the train step
    spec = AugmentSpec(corruptions=("gaussian_noise", "contrast"), corruption_prob=0.5)
    images = np.concatenate([digits] * 16)[:128]  # 128 real digits
    keys = jax.random.split(jax.random.key(3), 128)
    out = np.asarray(augment(images, keys, spec))
    sub = np.asarray(augment(images[40:72][::-1], keys[40:72][::-1], spec))
    np.testing.assert_array_equal(sub, out[40:72][::-1])  # another batch around it: same
    changed = (out != images).any(axis=(1, 2))
    assert 40 <= changed.sum() <= 88, changed.sum()  # Binomial(128, 0.5): mean 64, sd 5.7
    none = AugmentSpec(corruptions=("gaussian_noise",), corruption_prob=0.0)
    np.testing.assert_array_equal(np.asarray(augment(images, keys, none)), images)
    with pytest.raises(ConfigError, match="unknown corruption 'gausian_noise'; valid: gaussian"):
        corruption_augment.check(AugmentSpec(corruptions=("gausian_noise",)))
