"""Model shapes, parameter counts and the name -> module registry."""

import jax
import jax.numpy as jnp
import pytest

from configs import cnn, default, lenet, mlp
from mnist_jax import models
from mnist_jax.errors import ConfigError


@pytest.mark.parametrize(
    ("get_config", "expected"),
    [
        # 784*512+512 + 512*512+512 + 512*10+10
        (mlp.get_config, 669_706),
        # conv 5x5x1x32+32, conv 5x5x32x64+64, dense 7*7*64*128+128, 128*10+10
        (cnn.get_config, 832 + 51_264 + 401_536 + 1_290),
        # C1 156, C3 2,416 (full connection table), F5 48,120, F6 10,164, output 850
        (lenet.get_config, 156 + 2_416 + 48_120 + 10_164 + 850),
    ],
)
def test_default_parameter_counts(get_config, expected):
    config = get_config()
    model = models.create_model(config)
    params = models.init_params(model, jax.random.key(0))
    assert models.count_params(params) == expected
    logits = model.apply({"params": params}, jnp.zeros((3, 28, 28, 1)))
    assert logits.shape == (3, 10) and logits.dtype == jnp.float32


def test_unknown_model_lists_valid_names():
    config = default.get_config()
    config.model = "resnet"
    with pytest.raises(ConfigError, match=r"unknown model 'resnet'; valid: cnn, lenet5, mlp"):
        models.create_model(config)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("mlp.activation", "swish2", "unknown mlp activation 'swish2'"),
        ("dtype", "float16", "unknown dtype 'float16'"),
        ("layers.conv_impl", "fft", "unknown cnn conv_impl 'fft'"),
    ],
)
def test_bad_choices_fail_at_creation(key, value, message):
    config = default.get_config()
    config.model = key.split(".")[0] if key.startswith("mlp") else "cnn"
    section, _, name = key.rpartition(".")
    setattr(config[section] if section else config, name, value)
    with pytest.raises(ConfigError, match=message):
        models.create_model(config)


def test_dropout_is_active_only_in_training():
    config = mlp.get_config()
    model = models.create_model(config)
    params = models.init_params(model, jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (4, 28, 28, 1))
    eval_a = model.apply({"params": params}, x)
    eval_b = model.apply({"params": params}, x)
    assert jnp.array_equal(eval_a, eval_b)
    train = model.apply({"params": params}, x, train=True, rngs={"dropout": jax.random.key(2)})
    assert not jnp.allclose(train, eval_a)


def test_bfloat16_compute_keeps_float32_params_and_logits():
    config = cnn.get_config()
    config.dtype = "bfloat16"
    model = models.create_model(config)
    params = models.init_params(model, jax.random.key(0))
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
    assert model.apply({"params": params}, jnp.zeros((2, 28, 28, 1))).dtype == jnp.float32
