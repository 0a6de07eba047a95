"""The hybrid model (k conv layers feeding an MLP head) and the L1 penalty (optimizer.l1)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mnist_jax import models
from mnist_jax.configs import default, hybrid, mlp
from mnist_jax.core.errors import ConfigError
from mnist_jax.evaluation import runs
from mnist_jax.training import optim, train, validation

HEAD = 784 * 512 + 512 + 512 * 512 + 512 + 512 * 10 + 10  # the MLP's 784-512-512-10


def _params(config):
    """The model and its variables (initialised by one compiled program, not op by op)."""
    model = models.create_model(config)
    return model, jax.jit(lambda key: models.init_variables(model, key))(jax.random.key(0))


def _shapes(config):
    """The variables' shapes only: counting parameters needs no initialisation."""
    model = models.create_model(config)
    return jax.eval_shape(lambda: models.init_variables(model, jax.random.key(0)))


@pytest.mark.parametrize(
    ("channels", "expected"),
    [
        ((), HEAD),  # k = 0: the MLP itself
        ((4,), 5 * 5 * 1 * 4 + 4 + HEAD),  # 14x14x4 = 784 inputs: the same head
        ((4, 16), 104 + 5 * 5 * 4 * 16 + 16 + HEAD),  # 7x7x16 = 784 inputs: the same head
        ((32,), 832 + 14 * 14 * 32 * 512 + 512 + 512 * 512 + 512 + 5_130),  # 6,272 inputs
    ],
)
def test_hybrid_parameter_counts(channels, expected):
    config = hybrid.get_config()
    config.hybrid.channels = channels
    variables = _shapes(config)
    assert models.count_params(variables["params"]) == expected
    assert len([k for k in variables["params"] if k.startswith("Conv")]) == len(channels)
    models.check_contract(models.create_model(config), "hybrid")  # logits (batch, 10)


def test_hybrid_with_the_cnn_widths_has_the_cnn_parameter_count():
    """Two 5x5 conv32/conv64 layers and a 128-unit head: the classic CNN (default.py's cnn)."""
    config = hybrid.get_config()
    config.hybrid.channels, config.hybrid.hidden_sizes = (32, 64), (128,)
    classic = default.get_config()
    classic.model = "cnn"
    cnn_params = _shapes(classic)["params"]
    assert models.count_params(_shapes(config)["params"]) == models.count_params(cnn_params)


def test_hybrid_without_conv_layers_is_the_mlp():
    config = hybrid.get_config()
    config.hybrid.channels = ()
    model, variables = _params(config)
    mlp_config = mlp.get_config()
    mlp_config.mlp.hidden_sizes = config.hybrid.hidden_sizes  # the hybrid keeps a 512-512 head
    mlp_model, mlp_variables = _params(mlp_config)
    # Same layers, names and initialisation from the same key: the same network.
    assert jax.tree.structure(variables) == jax.tree.structure(mlp_variables)
    for a, b in zip(jax.tree.leaves(variables), jax.tree.leaves(mlp_variables), strict=True):
        np.testing.assert_array_equal(a, b)
    x = jax.random.normal(jax.random.key(1), (4, 28, 28, 1))
    rngs = {"dropout": jax.random.key(2)}
    for train_mode in (False, True):
        apply = jax.jit(
            lambda m, v, t=train_mode: m.apply(v, x, train=t, rngs=rngs), static_argnums=0
        )
        np.testing.assert_array_equal(apply(model, variables), apply(mlp_model, mlp_variables))


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("channels", (4, 8, 16), r"hybrid.channels=\(4, 8, 16\) has 3 conv layers; at most 2"),
        ("channels", (4, 0), r"hybrid.channels=\(4, 0\) is not a list of positive integers"),
        ("kernel_size", 0, r"hybrid.kernel_size=\[0\] is not a list of positive"),
        ("hidden_sizes", (-1,), r"hybrid.hidden_sizes=\(-1,\) is not a list of positive"),
        ("dropout", 1.0, r"hybrid.dropout=1.0 is not a number in \[0, 1\)"),
    ],
)
def test_hybrid_bad_values_fail_naming_the_field(key, value, message):
    config = hybrid.get_config()
    config.hybrid[key] = value
    with pytest.raises(ConfigError, match=message):
        validation.validate(config)


# --- L1 ---------------------------------------------------------------------------------------


def test_l1_adds_the_subgradient_to_weight_matrices_only():
    params = {"kernel": jnp.array([[0.5, -2.0], [0.0, 3.0]]), "bias": jnp.array([1.0, -1.0])}
    grads = jax.tree.map(jnp.ones_like, params)
    tx = optim.add_l1_subgradient(0.1)
    updates, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(updates["kernel"], [[1.1, 0.9], [1.0, 1.1]])  # sign(0) = 0
    np.testing.assert_array_equal(updates["bias"], grads["bias"])  # biases are not penalised
    # Through plain SGD, a weight far from 0 moves by lr * l1 per step towards 0.
    sgd = optax.chain(optim.add_l1_subgradient(0.1), optax.sgd(1.0))
    zero = jax.tree.map(jnp.zeros_like, params)
    step, _ = sgd.update(zero, sgd.init(params), params)
    np.testing.assert_allclose(step["kernel"], [[-0.1, 0.1], [0.0, -0.1]])


@pytest.mark.parametrize("value", [-1e-5, float("nan"), float("inf")])
def test_l1_must_be_a_non_negative_number(value):
    config = mlp.get_config()
    config.optimizer.l1 = value
    with pytest.raises(ConfigError, match=r"^optimizer.l1=.* is not a number in \[0, inf\)$"):
        validation.validate(config)


def _mean_abs_kernels(workdir) -> float:
    run = runs.open_run(workdir)
    model = runs.build_model(run.config)
    params = runs.restore_best(run, model)["params"]
    kernels = [p for p in jax.tree.leaves(params) if p.ndim > 1]
    return float(np.mean(np.concatenate([np.abs(np.asarray(k)).ravel() for k in kernels])))


def test_l1_shrinks_the_weights_of_a_real_run(tmp_path, mnist_dir):
    config = mlp.get_config()
    config.mlp.hidden_sizes, config.mlp.dropout = (32,), 0.0
    config.data.train_fraction, config.data.augment_shift = 0.05, 0
    config.num_epochs, config.batch_size, config.schedule.name = 1, 32, "constant"
    config.optimizer.learning_rate = 3e-3
    config.log_every_seconds = 1000.0
    train.train_and_evaluate(config, str(tmp_path / "plain"))
    config.optimizer.l1 = 3e-2  # dominates the data gradient: Adam walks every weight to 0
    summary = train.train_and_evaluate(config, str(tmp_path / "l1"))
    plain, shrunk = _mean_abs_kernels(tmp_path / "plain"), _mean_abs_kernels(tmp_path / "l1")
    assert shrunk < 0.5 * plain, (shrunk, plain)
    assert summary["test_count"] == 10_000
