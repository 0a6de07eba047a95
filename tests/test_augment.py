"""On-device augmentation: shifts, affine maps and elastic fields that depend only on the key."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage

from mnist_jax.configs import default
from mnist_jax.core.errors import ConfigError
from mnist_jax.data import augment, load_mnist


def test_random_shift_translates_within_bounds(mnist_dir):
    train, _ = load_mnist(mnist_dir)
    images = jnp.asarray(train.images[:64])
    keys = jax.random.split(jax.random.key(0), 64)
    shifted = np.asarray(augment.random_shift(images, keys, 2))
    assert shifted.shape == images.shape and shifted.dtype == np.uint8
    moved = 0
    for original, out in zip(np.asarray(images), shifted, strict=True):
        padded = np.pad(original, 2)  # zero (background) fill, as a translation should
        found = [
            (dy, dx)
            for dy in range(5)
            for dx in range(5)
            if np.array_equal(padded[dy : dy + 28, dx : dx + 28], out)
        ]
        assert found, "output is not a translation of the input"
        moved += found[0] != (2, 2)
    assert moved > 40  # 24 of 25 offsets move the image


def test_random_shift_depends_only_on_each_key():
    images = jnp.asarray(np.random.default_rng(0).integers(0, 255, (8, 28, 28), dtype=np.uint8))
    keys = jax.random.split(jax.random.key(1), 8)
    full = augment.random_shift(images, keys, 3)
    halves = [augment.random_shift(images[i : i + 4], keys[i : i + 4], 3) for i in (0, 4)]
    assert jnp.array_equal(full, jnp.concatenate(halves))
    assert jnp.array_equal(augment.random_shift(images, keys, 0), images)


# ---- mnist_jax.data.augment ----
# Few compiled programs (XLA:CPU compiles each in about a second): the train step compiles these
# functions too, and eager dispatch of their many small ops would be slower still.

_augment = jax.jit(augment.augment, static_argnames="spec")
_shift = jax.jit(augment.random_shift, static_argnames="max_shift")
_warp_jit = jax.jit(augment.warp)


def _warp(images, rotation=0.0, scale=1.0, shear=0.0, translate=(0.0, 0.0)):
    """One compiled program for every fixed affine map (the parameters are its arguments)."""
    return _warp_jit(images, rotation=rotation, scale=scale, shear=shear, translate=translate)


@pytest.fixture(scope="module")
def digits(mnist_dir):
    _, test = load_mnist(mnist_dir)
    return jnp.asarray(test.images[:16])


def _keys(n, seed=0):
    return jax.random.split(jax.random.key(seed), n)


def _fold(keys, stream):
    return jax.vmap(jax.random.fold_in, (0, None))(keys, stream)


def _ink_box(image, threshold=64):
    rows, cols = np.nonzero(np.asarray(image) > threshold)
    return rows.max() - rows.min() + 1, cols.max() - cols.min() + 1


def _centre_of_mass(image):
    return np.array(scipy.ndimage.center_of_mass(np.asarray(image, np.float64)))


def test_a_shift_only_spec_shifts_with_the_shift_stream(digits):
    """A shift-only spec shifts with fold_in(example_key, 1), as train steps always have."""
    keys = _keys(16, 4)
    expected = _shift(digits, _fold(keys, 1), 2)
    assert jnp.array_equal(_augment(digits, keys, augment.AugmentSpec(shift=2)), expected)


def test_fixed_warps_rotate_translate_scale_and_shear_as_documented(digits):
    original = np.asarray(digits)
    assert np.array_equal(_warp(digits), original)  # the identity map is exact
    once = np.asarray(_warp(digits, rotation=90.0))
    assert np.array_equal(once, np.rot90(original, 1, axes=(1, 2)))  # counter-clockwise
    twice = np.asarray(_warp(jnp.asarray(once), rotation=90.0))
    assert np.array_equal(twice, np.rot90(original, 2, axes=(1, 2)))

    moved = np.asarray(_warp(digits, translate=(2.0, -3.0)))  # integer offsets copy pixels
    assert np.array_equal(moved, np.pad(original, ((0, 0), (2, 0), (0, 3)))[:, :28, 3:])
    half = _warp(digits, translate=(0.0, 0.5))
    shift = [_centre_of_mass(b) - _centre_of_mass(a) for a, b in zip(digits, half, strict=True)]
    np.testing.assert_allclose(np.mean(shift, axis=0), [0.0, 0.5], atol=0.05)

    for before, after in zip(digits, _warp(digits, scale=1.3), strict=True):
        assert all(a > b for a, b in zip(_ink_box(after), _ink_box(before), strict=True))

    bars = np.zeros_like(original)
    bars[:, 4:24, 13:15] = 255
    slanted = np.asarray(_warp(jnp.asarray(bars), shear=20.0))[0]
    top, bottom = _centre_of_mass(slanted[:14])[1], _centre_of_mass(slanted[14:])[1]
    assert abs((top - bottom) - 10 * math.tan(math.radians(20.0))) < 0.3  # leans right: italics


@jax.jit
def _streams(images, keys):
    """augment's streams 2 and 3 are random_affine's and elastic's keys; zero strength is exact."""
    return {
        "affine": augment.augment(images, keys, augment.AugmentSpec(rotation=15.0, shear=10.0)),
        "random_affine": augment.random_affine(images, _fold(keys, 2), 15.0, 0.0, 10.0, 0.0),
        "elastic": augment.augment(
            images, keys, augment.AugmentSpec(elastic_alpha=20.0, elastic_sigma=1.0)
        ),
        "elastic_fn": augment.elastic(images, _fold(keys, 3), 20.0, 1.0),
        "affine_zero": augment.random_affine(images, keys, 0.0, 0.0, 0.0, 0.0),
        "elastic_zero": augment.elastic(images, keys, 0.0, 1.0),
        "field": augment.elastic_field(keys[0], (28, 28), 34.0, 4.0),
    }


def test_streams_zero_strength_and_the_elastic_field(digits):
    keys = _keys(16, 8)
    out = _streams(digits, keys)
    assert jnp.array_equal(out["affine"], out["random_affine"])
    assert jnp.array_equal(out["elastic"], out["elastic_fn"])
    assert not jnp.array_equal(out["affine"], digits)
    assert jnp.array_equal(out["affine_zero"], digits)
    assert jnp.array_equal(out["elastic_zero"], digits)
    spec = augment.AugmentSpec()
    assert spec.is_identity and augment.augment(digits, keys, spec) is digits

    # The field is scipy's gaussian_filter (mode='constant') of uniform(-1, 1) noise, times alpha.
    noise = augment.draw(jax.random.uniform, keys[0], (2, 28, 28), minval=-1.0, maxval=1.0)
    smooth = [scipy.ndimage.gaussian_filter(n, 4.0, mode="constant") for n in np.float64(noise)]
    np.testing.assert_allclose(out["field"], 34.0 * np.stack(smooth), atol=1e-5)
    assert 0.5 < float(out["field"].std()) < 3  # about 1.4 px: Simard's alpha 34, sigma 4


def test_augment_is_deterministic_and_per_example(digits):
    keys = _keys(16, 5)
    spec = augment.AugmentSpec(
        shift=1,
        rotation=15.0,
        scale=0.1,
        shear=10.0,
        translate=1.5,
        elastic_alpha=10.0,
        elastic_sigma=2.0,
    )
    out = _augment(digits, keys, spec)
    assert out.dtype == jnp.uint8 and out.shape == digits.shape
    assert bool((out != digits).any(axis=(1, 2)).all())
    assert jnp.array_equal(out, _augment(digits, keys, spec))
    assert not jnp.array_equal(out, _augment(digits, _keys(16, 6), spec))
    # What a device with half the batch computes: the same images (device-count independence).
    halves = [_augment(digits[i : i + 8], keys[i : i + 8], spec) for i in (0, 8)]
    assert jnp.array_equal(out, jnp.concatenate(halves))


def test_the_elastic_fields_barrier_changes_speed_not_bits(digits, monkeypatch):
    # The fields are kept in memory so that XLA does not recompute them per use; the results
    # recorded for configs/mlp_best.py (elastic distortion) were made before, so the images
    # must be the same to the bit with the barrier and without.
    from mnist_jax.configs import mlp_best

    spec = augment.AugmentSpec.from_config(mlp_best.get_config().data)
    assert spec.elastic_alpha
    keys = jax.random.split(jax.random.key(3), len(digits))
    kept = np.asarray(jax.jit(lambda x, k: augment.augment(x, k, spec))(digits, keys))
    monkeypatch.setattr(augment.lax, "optimization_barrier", lambda x: x)
    fused = np.asarray(jax.jit(lambda x, k: augment.augment(x, k, spec))(digits, keys))
    np.testing.assert_array_equal(kept, fused)


def test_spec_reads_config_data_and_old_configs_mean_no_augmentation():
    data = default.get_config().data
    assert augment.AugmentSpec.from_config(data).is_identity
    data.augment_shift = 2
    assert augment.AugmentSpec.from_config(data) == augment.AugmentSpec(shift=2)
    spec = augment.AugmentSpec.from_config(
        {"augment_rotation": 10, "augment_elastic_alpha": 34, "augment_elastic_sigma": 4}
    )
    assert spec == augment.AugmentSpec(rotation=10.0, elastic_alpha=34.0, elastic_sigma=4.0)
    assert spec.resamples and not spec.is_identity


@pytest.mark.parametrize(
    ("key", "value", "valid"),
    [
        ("augment_shift", 1.5, "[0, 14]"),
        ("augment_shift", -1, "[0, 14]"),
        ("augment_rotation", 181.0, "[0, 180]"),
        ("augment_scale", 1.0, "[0, 1)"),
        ("augment_shear", float("nan"), "[0, 60]"),
        ("augment_translate", "2", "[0, 14]"),
        ("augment_elastic_alpha", -5.0, "[0, 100]"),
    ],
)
def test_bad_augment_values_are_named_with_their_valid_range(key, value, valid):
    with pytest.raises(ConfigError) as error:
        augment.AugmentSpec.from_config({key: value})
    message = str(error.value)
    assert "\n" not in message and key in message and repr(value) in message and valid in message


def test_elastic_sigma_must_be_positive_when_alpha_is_set():
    assert augment.AugmentSpec.from_config({"augment_elastic_sigma": 0.0}).is_identity
    with pytest.raises(ConfigError, match=r"augment_elastic_sigma=0\.0 .*\(0, 14\]"):
        augment.AugmentSpec.from_config(
            {"augment_elastic_alpha": 10.0, "augment_elastic_sigma": 0.0}
        )
