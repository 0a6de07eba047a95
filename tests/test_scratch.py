"""The from-scratch MLP: hand-written backpropagation against jax.grad, and a short real run."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mnist_jax import scratch
from mnist_jax.data import Split, load_mnist
from tests.conftest import run_module


@pytest.fixture(scope="module")
def mnist(mnist_dir):
    return load_mnist(mnist_dir)


def test_backward_equals_jax_grad_on_a_real_batch(mnist):
    train, _ = mnist
    params = scratch.init_params(jax.random.key(1), 64)
    # Move off the initial point (zero biases, symmetric scales) so every term is exercised.
    params = jax.tree.map(
        lambda p, k: p + 0.05 * jax.random.normal(k, p.shape),
        params,
        dict(zip(params, jax.random.split(jax.random.key(2), len(params)), strict=True)),
    )
    x, y = scratch.preprocess(jnp.asarray(train.images[:256])), jnp.asarray(train.labels[:256])
    logits, cache = scratch.forward(params, x)
    ours = scratch.backward(params, cache, logits, y)
    reference = jax.grad(lambda p: scratch.loss(scratch.forward(p, x)[0], y))(params)
    assert jax.tree.structure(ours) == jax.tree.structure(params)
    for name in params:
        assert ours[name].shape == params[name].shape
        scale = float(jnp.abs(reference[name]).max())
        assert scale > 0
        error = float(jnp.abs(ours[name] - reference[name]).max())
        assert error <= 1e-5 * scale, (name, error, scale)


def test_a_short_run_learns(mnist):
    train, test = mnist
    subset = Split(train.images[:10_000], train.labels[:10_000])
    result = scratch.train(subset, test, hidden=128, epochs=2, batch_size=100, seed=0)
    first, second = result["history"]
    assert first["loss"] < math.log(10)  # below chance level already within the first epoch
    assert second["loss"] < first["loss"]
    assert first["test_accuracy"] > 0.90 and second["test_accuracy"] >= first["test_accuracy"]
    assert result["test_count"] == 10_000
    # The returned weights are the ones that scored that accuracy.
    assert scratch.accuracy(result["params"], test.images, test.labels) == pytest.approx(
        result["test_accuracy"]
    )
    assert np.isfinite(result["seconds"])


def test_bad_settings_are_rejected_by_name(mnist):
    train, test = mnist
    with pytest.raises(scratch.ConfigError, match="batch_size=0 is invalid"):
        scratch.train(train, test, batch_size=0)
    with pytest.raises(scratch.ConfigError, match=r"momentum=1.0 is invalid; valid: in \[0, 1\)"):
        scratch.train(train, test, momentum=1.0)


def test_help_names_the_flags():
    out = run_module("mnist_jax.scratch", "--help")
    for text in ("--hidden", "--epochs", "--batch_size", "--learning_rate", "--data_dir"):
        assert text in out.stdout
