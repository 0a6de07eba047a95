"""The model contract: shapes, parameter counts, the registry, config checks, BatchNorm state."""

from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mnist_jax import models
from mnist_jax.configs import cnn, default, lenet, mlp, resnet
from mnist_jax.core import configuration
from mnist_jax.core.errors import ConfigError
from mnist_jax.data import load_mnist, preprocess
from mnist_jax.models import layers
from mnist_jax.training import validation

# `core` (also run on the oldest supported JAX, .ci/run): every config and every registered
# model builds and keeps the contract there; the rest of the module checks the models' own maths.

ROOT = Path(__file__).resolve().parents[1]
NOT_CONFIGS = {"__init__", "default"}


def _init(config):
    model = models.create_model(config)
    return model, models.init_variables(model, jax.random.key(0))


@pytest.mark.parametrize(
    ("get_config", "expected"),
    [
        # 784*1024+1024 + 1024*1024+1024 + 1024*10+10
        (mlp.get_config, 1_863_690),
        # 2x2 stem: conv 3x3x4x48+48, conv 3x3x48x96+96, dense 3*3*96*256+256, 256*10+10
        (cnn.get_config, 1_776 + 41_568 + 221_440 + 2_570),
        # C1 156, C3 2,416 (full connection table), F5 48,120, F6 10,164, output 850
        (lenet.get_config, 156 + 2_416 + 48_120 + 10_164 + 850),
    ],
)
def test_default_parameter_counts(get_config, expected):
    model, variables = _init(get_config())
    assert models.count_params(variables["params"]) == expected
    logits = model.apply(variables, jnp.zeros((3, 28, 28, 1)))
    assert logits.shape == (3, 10) and logits.dtype == jnp.float32


@pytest.mark.core
@pytest.mark.parametrize(
    "path", sorted(p for p in (ROOT / "configs").glob("*.py") if p.stem not in NOT_CONFIGS)
)
def test_every_config_file_and_variant_is_valid_and_builds(path):
    for variant in default.VARIANTS:
        config = configuration.load(f"{path}:{variant}" if variant else str(path))
        validation.validate(config)
        models.check_contract(models.create_model(config), config.model)


@pytest.mark.core
def test_every_shipped_model_keeps_the_contract():
    for name in models.MODELS:
        config = default.get_config()
        config.model = name
        models.check_contract(models.create_model(config), name)


def test_unknown_model_lists_valid_names():
    config = default.get_config()
    config.model = "resnt"
    with pytest.raises(
        ConfigError, match=r"unknown model 'resnt'; valid: .*mlp.*resnet.*mean 'resnet'"
    ):
        models.create_model(config)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("mlp.activation", "swish2", "mlp.activation='swish2' is not one of"),
        ("mlp.dropout", 1.5, r"mlp.dropout=1.5 is not a number in \[0, 1\)"),
        ("mlp.hidden_sizes", (512, -1), r"mlp.hidden_sizes=\(512, -1\) is not a list of positive"),
        ("cnn.stem_patch", 3, "cnn.stem_patch=3 must divide 28"),
        ("cnn.kernel_sizes", (5,), "must have the same length"),
        ("resnet.blocks", (1, 1), "one entry per stage"),
        ("dtype", "float16", "dtype='float16' is not one of bfloat16, float32"),
    ],
)
def test_bad_values_fail_at_creation(key, value, message):
    config = default.get_config()
    config.model = key.split(".")[0] if "." in key else "cnn"
    section, _, name = key.rpartition(".")
    (config[section] if section else config)[name] = value
    with pytest.raises(ConfigError, match=message):
        models.create_model(config)


def test_unknown_section_key_suggests_the_field():
    config = mlp.get_config()
    config.mlp.hiden_sizes = (64,)
    with pytest.raises(
        ConfigError, match=r"unknown key mlp.hiden_sizes \(did you mean 'hidden_sizes'"
    ):
        models.create_model(config)


def test_dropout_is_active_only_in_training_and_keyed_by_position():
    model, variables = _init(mlp.get_config())
    x = jax.random.normal(jax.random.key(1), (4, 28, 28, 1))
    assert jnp.array_equal(model.apply(variables, x), model.apply(variables, x))
    rngs = {"dropout": jax.random.key(2)}
    train = model.apply(variables, x, train=True, rngs=rngs)
    assert not jnp.allclose(train, model.apply(variables, x))
    # Each example's mask depends on its global position only: the second half of the batch,
    # applied alone at positions 2 and 3, gets the same outputs as inside the whole batch. Equal
    # to float rounding: a matrix product's blocking, so its last bits, may depend on the batch's
    # row count (docs/determinism.md); one unit masked differently moves a logit by ~1e-2.
    with layers.context(positions=jnp.arange(2, 4)):
        half = model.apply(variables, x[2:], train=True, rngs=rngs)
    np.testing.assert_allclose(half, train[2:], rtol=0, atol=1e-5)
    other = model.apply(variables, x[2:], train=True, rngs=rngs)  # positions 0 and 1
    assert np.abs(other - train[2:]).max() > 1e-3


def test_bfloat16_compute_keeps_float32_params_and_logits():
    config = cnn.get_config()
    config.dtype = "bfloat16"
    model, variables = _init(config)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables))
    assert model.apply(variables, jnp.zeros((2, 28, 28, 1))).dtype == jnp.float32


def test_resnet_keeps_batch_statistics_and_uses_them_in_evaluation():
    model, variables = _init(resnet.get_config())
    params, state = models.split_variables(variables)
    assert set(state) == {"batch_stats"}
    x = 3.0 + jax.random.normal(jax.random.key(1), (8, 28, 28, 1))
    train_step = jax.jit(  # compiled: 5.5 s against 6.9 s op by op (2 cores, empty cache)
        lambda v, x: model.apply(
            v, x, train=True, rngs={"dropout": jax.random.key(0)}, mutable=["batch_stats"]
        )
    )
    logits, new_state = train_step(variables, x)
    moved = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), state, new_state)
    assert all(m > 0 for m in jax.tree.leaves(moved))  # running averages updated
    # Evaluation normalises with the running averages: one image gives the same logits alone
    # as in a batch (training-mode statistics would differ).
    apply = jax.jit(model.apply)
    batch = apply({"params": params, **new_state}, x)
    alone = apply({"params": params, **new_state}, x[:1])
    np.testing.assert_allclose(alone, batch[:1], rtol=1e-5, atol=1e-5)
    assert logits.shape == (8, 10)


def test_batchnorm_statistics_are_averaged_over_the_data_axis():
    """Two 'devices' of 4 examples each under pmap see the 8-example batch's statistics."""
    bn = layers.BatchNorm()
    x = jax.random.normal(jax.random.key(0), (8, 3, 3, 2)) * 2 + 1
    v = bn.init(jax.random.key(0), x, train=False)
    whole, _ = bn.apply(v, x, train=True, mutable=["batch_stats"])

    def per_device(xs):
        with layers.context(axis_name="d"):
            return bn.apply(v, xs, train=True, mutable=["batch_stats"])[0]

    # A named vmap axis runs the same collectives (pmean) as pmap's device axis.
    split = jax.vmap(per_device, axis_name="d")(x.reshape(2, 4, 3, 3, 2))
    np.testing.assert_allclose(split.reshape(whole.shape), whole, rtol=1e-5, atol=1e-5)


class _Affine(nn.Module):
    """A model defined here, outside the package (the registry test in test_train.py too)."""

    scale: float = 1.0

    @nn.compact
    def __call__(self, x, *, train=False):
        return nn.Dense(10)(x.reshape(x.shape[0], -1) * self.scale)


def test_registered_model_is_built_from_its_section():
    models.register("affine_test")(_Affine)
    try:
        config = default.get_config()
        config.model = "affine_test"
        config.affine_test = {"scale": 2.0}
        model = models.create_model(config)
        assert isinstance(model, _Affine) and model.scale == 2.0
        models.check_contract(model, "affine_test")
    finally:
        del models.MODELS["affine_test"]


def test_contract_violation_is_named():
    class Wrong(nn.Module):
        @nn.compact
        def __call__(self, x, *, train=False):
            return nn.Dense(5)(x.reshape(x.shape[0], -1))

    with pytest.raises(ConfigError, match=r"model 'wrong' returns \(2, 5\)"):
        models.check_contract(Wrong(), "wrong")


@pytest.mark.parametrize(
    ("name", "convolutional"),
    [("mlp", False), ("cnn", True), ("lenet", True), ("resnet", True), ("hybrid", True)],
)
def test_uses_convolutions_is_read_from_the_parameters(name, convolutional):
    """What the benchmark's 'naive' formulation applies to, found without a list of names."""
    config = configuration.load(f"configs/{name}.py")
    assert models.uses_convolutions(models.create_model(config)) is convolutional
    if name == "hybrid":  # no convolutional layers: the MLP head alone
        config.hybrid.channels = ()
        assert not models.uses_convolutions(models.create_model(config))


@pytest.mark.parametrize("family", ["cnn", "mlp"])
def test_per_image_input_norm_ignores_brightness_and_contrast(family, mnist_dir):
    """<family>.input_norm='per_image': an affine change of a real digit's pixels (half the contrast
    on a grey background: p -> 0.5 + 0.5 p) leaves the logits as they were, up to the variance
    floor (1e-4 against a digit's variance of about 0.25 after the change: 0.02%); with the
    dataset's statistics it does not."""
    _, test = load_mnist(mnist_dir)
    pixels = test.images[:4].astype(np.float32)[..., None] / 255.0
    standardise = lambda p: (p - preprocess.MNIST_MEAN) / preprocess.MNIST_STD
    images, changed = standardise(pixels), standardise(0.5 + 0.5 * pixels)
    logits = {}
    for norm in ("dataset", "per_image"):
        config = configuration.load(f"configs/{family}.py")
        config[family].input_norm = norm
        model, variables = _init(config)
        logits[norm] = [model.apply(variables, x) for x in (images, changed)]
    np.testing.assert_allclose(*logits["per_image"], rtol=1e-3, atol=1e-3)
    assert np.abs(logits["dataset"][0] - logits["dataset"][1]).max() > 0.1
