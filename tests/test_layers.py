"""Each fast formulation computes the same function (and gradient) as the textbook layer."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mnist_jax.models import layers


def apply_with(module, impl, *args, **kwargs):
    """`module.apply` traced with a formulation; the model itself never names one."""
    with layers.context(
        conv_impl=impl, pool_impl="reshape" if impl == "im2col" else "reduce_window"
    ):
        return module.apply(*args, **kwargs)


@pytest.mark.parametrize("impl", ["im2col", "xla"])
@pytest.mark.parametrize("padding", ["SAME", "VALID"])
@pytest.mark.parametrize(
    ("size", "cin", "cout", "stride"), [(3, 1, 8, 1), (5, 6, 16, 1), (3, 4, 8, 2)]
)
def test_conv_matches_flax_conv(impl, padding, size, cin, cout, stride):
    x = jax.random.normal(jax.random.key(0), (4, 11, 12, cin))
    reference = nn.Conv(cout, (size, size), strides=(stride, stride), padding=padding)
    params = reference.init(jax.random.key(1), x)
    ours = layers.Conv(cout, size, strides=stride, padding=padding)
    assert jax.tree.map(jnp.shape, ours.init(jax.random.key(1), x)) == jax.tree.map(
        jnp.shape, params
    )

    def loss(module, p):
        return jnp.sum(jnp.sin(apply_with(module, impl, p, x)))

    np.testing.assert_allclose(
        apply_with(ours, impl, params, x), reference.apply(params, x), atol=1e-4
    )
    g_ours = jax.grad(lambda p: loss(ours, p))(params)
    g_ref = jax.grad(lambda p: loss(reference, p))(params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4), g_ours, g_ref)


def test_auto_formulation_follows_the_backend_and_the_trace():
    assert jax.default_backend() == "cpu"
    # Forward only, XLA's convolution; in a differentiated (train step) trace, im2col.
    assert layers.conv_impl() == "xla" and layers.pool_impl() == "reshape"
    with layers.context(differentiated=True):
        assert layers.conv_impl() == "im2col" and layers.pool_impl() == "reshape"
        with layers.context(conv_impl="xla", pool_impl="reduce_window"):
            assert layers.conv_impl() == "xla" and layers.pool_impl() == "reduce_window"
        assert layers.conv_impl() == "im2col"  # the context ends with the block
    assert layers.conv_impl() == "xla"


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("shape", [(2, 8, 8, 3), (2, 7, 9, 4)])
def test_reshape_pool_matches_reduce_window(kind, shape):
    # relu first, as in the models: windows tied at 0 then carry no gradient in either
    # formulation (reduce_window gives a tie's gradient to one element, jnp.max splits it).
    x = jax.random.normal(jax.random.key(0), shape)
    w = jax.random.normal(jax.random.key(1), (shape[1] // 2, shape[2] // 2, shape[3]))

    def pool(impl, x):
        with layers.context(pool_impl=impl):
            return layers.pool2x2(x, kind)

    def loss(impl, x):
        return jnp.sum(pool(impl, nn.relu(x)) * w)

    np.testing.assert_allclose(pool("reshape", x), pool("reduce_window", x), atol=1e-6)
    np.testing.assert_allclose(
        jax.grad(loss, 1)("reshape", x), jax.grad(loss, 1)("reduce_window", x), atol=1e-6
    )


def test_unknown_pool_is_rejected():
    with pytest.raises(ValueError, match="unknown pool 'median'"):
        layers.pool2x2(jnp.zeros((1, 4, 4, 1)), "median")


@pytest.mark.parametrize(("block", "cin"), [(2, 1), (2, 3), (4, 2)])
def test_space_to_depth_then_dense_is_a_strided_patch_conv(block, cin):
    # A b x b stride-b convolution is a per-pixel matrix product after space_to_depth, with the
    # kernel's (row, col, channel) axes flattened in that order.
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, cin))
    kernel = jax.random.normal(jax.random.key(1), (block, block, cin, 5))
    reference = jax.lax.conv_general_dilated(
        x, kernel, (block, block), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    ours = layers.space_to_depth(x, block) @ kernel.reshape(-1, 5)
    np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-5)
    assert layers.space_to_depth(x, 1) is x
    with pytest.raises(ValueError, match="must divide"):
        layers.space_to_depth(jnp.zeros((1, 7, 7, 1)), 2)


@pytest.mark.parametrize("impl", ["im2col", "xla"])
@pytest.mark.parametrize(
    ("size", "hw", "mode"),
    [(3, (7, 7), "SAME"), (5, (7, 9), "SAME"), (1, (5, 6), "SAME"), (3, (8, 9), "VALID")],
)
def test_conv_skipping_the_unpooled_edge_matches_textbook_conv_then_pool(impl, size, hw, mode):
    # A 2x2 'VALID' max pool of an odd map ignores its last row/column, so a conv that never
    # computes them (conv_padding with drop_last) must give the textbook conv->relu->pool
    # exactly, gradients included. ('VALID' 3x3 on 8x9: a 6x7 map, its last column dropped.)
    x = jax.random.normal(jax.random.key(0), (3, *hw, 4))
    reference = nn.Conv(8, (size, size), padding=mode)
    params = reference.init(jax.random.key(1), x)
    out_hw = [layers.conv_output_size(n, size, mode) for n in hw]
    drop = (out_hw[0] % 2 == 1, out_hw[1] % 2 == 1)
    ours = layers.Conv(8, size, padding=layers.conv_padding(size, drop, mode))

    def out(module, p, x):
        return nn.max_pool(nn.relu(apply_with(module, impl, p, x)), (2, 2), strides=(2, 2))

    def loss(module, p, x):
        return jnp.sum(jnp.sin(out(module, p, x)))

    assert apply_with(ours, impl, params, x).shape[1:3] == (out_hw[0] // 2 * 2, out_hw[1] // 2 * 2)
    np.testing.assert_allclose(out(ours, params, x), out(reference, params, x), atol=1e-5)
    g_ours = jax.grad(loss, (1, 2))(ours, params, x)
    g_ref = jax.grad(loss, (1, 2))(reference, params, x)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4), g_ours, g_ref)
