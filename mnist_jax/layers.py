"""Convolution and pooling, each in two formulations that compute the same function.

XLA's CPU backend runs the gradients of `lax.conv_general_dilated` and of `reduce_window` max
pooling (select-and-scatter) many times slower than their forward passes. Writing convolution as
a matrix product of image patches (im2col) and max pooling as a max over a reshaped axis turns
both backward passes into matrix products and element-wise selects, which every backend runs
well. tests/test_layers.py checks each formulation against the textbook layer.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

CONV_IMPLS = ("xla", "im2col")
POOL_IMPLS = ("reshape", "reduce_window")
POOLS = ("max", "avg", "none")


Padding = str | tuple[tuple[int, int], tuple[int, int]]


def same_padding(size: int, drop_last: tuple[bool, bool] = (False, False)) -> Padding:
    """'SAME' padding of a stride-1 `size` x `size` kernel as explicit (lo, hi) pairs.

    `drop_last` (rows, columns): one less at the high end, so the convolution does not compute
    its last output row / column. A 2x2 'VALID' pooling of an odd-sized map discards them anyway:
    on the 7x7 maps of the speedrun CNN that is 13 of 49 positions, 27% of the layer's FLOPs.
    """
    lo = (size - 1) // 2
    hi = size - 1 - lo
    rows, cols = drop_last
    return ((lo, hi - rows), (lo, hi - cols))


def im2col_conv(x: jax.Array, kernel: jax.Array, padding: Padding) -> jax.Array:
    """Stride-1 NHWC convolution as (N*H*W, kh*kw*cin) @ (kh*kw*cin, cout).

    The patches are kernel-sized shifted views of the (padded) input concatenated along the
    channel axis in (row, column, channel) order, the row-major layout of an HWIO kernel.
    `padding` is 'SAME', 'VALID' or explicit ((lo, hi), (lo, hi)) pairs (negative crops).
    """
    kh, kw, cin, cout = kernel.shape
    if padding == "SAME":
        if kh != kw:
            raise ValueError(f"im2col 'SAME' needs a square kernel, got {kh}x{kw}")
        padding = same_padding(kh)
    elif padding == "VALID":
        padding = ((0, 0), (0, 0))
    elif isinstance(padding, str):
        raise ValueError(f"padding must be 'SAME', 'VALID' or (lo, hi) pairs, got {padding!r}")
    (top, bottom), (left, right) = padding
    zero = jnp.zeros((), x.dtype)
    x = lax.pad(x, zero, ((0, 0, 0), (top, bottom, 0), (left, right, 0), (0, 0, 0)))
    _, h, w, _ = x.shape
    oh, ow = h - kh + 1, w - kw + 1
    patches = jnp.concatenate(
        [x[:, i : i + oh, j : j + ow, :] for i in range(kh) for j in range(kw)], axis=-1
    )
    return jnp.dot(patches, kernel.reshape(kh * kw * cin, cout))


class Conv(nn.Module):
    """Square stride-1 convolution with bias; parameters laid out exactly as `nn.Conv`'s.

    `padding` is 'SAME', 'VALID' or explicit ((lo, hi), (lo, hi)) pairs (see `same_padding`).
    """

    features: int
    kernel_size: int
    padding: Padding = "SAME"
    impl: str = "xla"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k = self.kernel_size
        kernel = self.param(
            "kernel", nn.initializers.lecun_normal(), (k, k, x.shape[-1], self.features)
        )
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        x, kernel, bias = x.astype(self.dtype), kernel.astype(self.dtype), bias.astype(self.dtype)
        if self.impl == "xla":
            y = lax.conv_general_dilated(
                x, kernel, (1, 1), self.padding, dimension_numbers=("NHWC", "HWIO", "NHWC")
            )
        elif self.impl == "im2col":
            y = im2col_conv(x, kernel, self.padding)
        else:
            raise ValueError(f"unknown conv impl {self.impl!r}; valid: {', '.join(CONV_IMPLS)}")
        return y + bias


def pool2x2(x: jax.Array, kind: str, impl: str = "reshape") -> jax.Array:
    """2x2 stride-2 'VALID' pooling (odd trailing rows/columns are dropped, as in nn.max_pool)."""
    if kind == "none":
        return x
    if kind not in ("max", "avg"):
        raise ValueError(f"unknown pool {kind!r}; valid: {', '.join(POOLS)}")
    if impl == "reduce_window":
        pool = nn.max_pool if kind == "max" else nn.avg_pool
        return pool(x, (2, 2), strides=(2, 2), padding="VALID")
    if impl != "reshape":
        raise ValueError(f"unknown pool impl {impl!r}; valid: {', '.join(POOL_IMPLS)}")
    n, h, w, c = x.shape
    x = x[:, : h // 2 * 2, : w // 2 * 2, :].reshape(n, h // 2, 2, w // 2, 2, c)
    return x.max(axis=(2, 4)) if kind == "max" else x.mean(axis=(2, 4))


def space_to_depth(x: jax.Array, block: int) -> jax.Array:
    """(N, H, W, C) -> (N, H/b, W/b, b*b*C): each b x b patch becomes one pixel of b*b*C channels.

    Equivalent to a b x b stride-b convolution's input patches, so a network can start at a lower
    resolution (a "patchify" stem) without discarding any pixel. Channel order: (row, col, c).
    """
    if block == 1:
        return x
    n, h, w, c = x.shape
    if h % block or w % block:
        raise ValueError(f"space_to_depth block {block} must divide the image size {h}x{w}")
    x = x.reshape(n, h // block, block, w // block, block, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(n, h // block, w // block, block * block * c)
