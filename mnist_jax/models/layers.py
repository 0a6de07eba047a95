"""Layers whose computation is chosen by the trainer, never by the model that uses them.

A model says *what* it computes (a 5x5 convolution, 2x2 max pooling, dropout, batch norm); the
`context` it is traced under says *how*:

- formulation (`conv_impl`, `pool_impl`): XLA's CPU backend runs the gradients of
  `lax.conv_general_dilated` and of `reduce_window` max pooling many times slower than their
  forward passes. Convolution as a matrix product of image patches (im2col) and max pooling as a
  max over a reshaped axis turn both backward passes into matrix products and element-wise
  selects. 'auto' picks those on CPU and XLA's own convolution and `reduce_window` on GPU and TPU;
  for the convolution, only in traces that are differentiated (the train step): forward only
  (evaluation, inference), XLA's CPU convolution is several times faster than im2col.
  Every formulation computes the same function (tests/test_layers.py), so formulation keys never
  change a run's identity.
- `axis_name`: the data-parallel axis over which BatchNorm averages its batch statistics, so a
  BatchNorm model normalises with the global batch's statistics on any number of devices.
- `positions`: each example's index in the global batch. Dropout draws each example's mask from
  (key, position), so 1 device and 8 devices draw the same masks for the same examples.

The context is a `contextvars` value read at trace time; the train and eval steps set it around
`model.apply`. Outside it (plain `model.apply`, export, predict) the defaults apply: 'auto'
formulations, no cross-device statistics, positions 0..B-1.
"""

import contextlib
import contextvars
import dataclasses
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from mnist_jax.core.errors import ConfigError

CONV_IMPLS = ("auto", "xla", "im2col")
POOL_IMPLS = ("auto", "reduce_window", "reshape")
POOLS = ("max", "avg", "none")
PADDINGS = ("SAME", "VALID")  # of the CNNs' convolutions
INPUT_NORMS = ("dataset", "per_image")  # of the models' inputs (input_standardization)

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu,
    "gelu": nn.gelu,
    "tanh": jnp.tanh,
    "scaled_tanh": lambda x: 1.7159 * jnp.tanh(2.0 / 3.0 * x),  # LeCun et al. 1998, appendix A
    "sigmoid": nn.sigmoid,
    "silu": nn.silu,
    "elu": nn.elu,
}

Padding = str | tuple[tuple[int, int], tuple[int, int]]


@dataclasses.dataclass(frozen=True)
class Context:
    """How the layers of one trace compute; see the module docstring."""

    conv_impl: str = "auto"
    pool_impl: str = "auto"
    axis_name: str | None = None
    positions: jax.Array | None = None
    deterministic: bool = False  # the same bits on any device count (the 'tree' reduction)
    differentiated: bool = False  # traced for a gradient (the train step), not forward only


_DEFAULT = Context()  # frozen: safe to share as the default
_CONTEXT: contextvars.ContextVar[Context] = contextvars.ContextVar(
    "mnist_jax_layers", default=_DEFAULT
)


@contextlib.contextmanager
def context(**changes: Any) -> Iterator[Context]:
    """Trace the enclosed `model.apply` with these `Context` fields changed."""
    token = _CONTEXT.set(dataclasses.replace(_CONTEXT.get(), **changes))
    try:
        yield _CONTEXT.get()
    finally:
        _CONTEXT.reset(token)


def current() -> Context:
    return _CONTEXT.get()


def _on_cpu() -> bool:
    return jax.default_backend() == "cpu"


def conv_impl() -> str:
    impl = current().conv_impl
    if impl not in CONV_IMPLS:
        raise ValueError(f"unknown conv_impl {impl!r}; valid: {', '.join(CONV_IMPLS)}")
    if impl != "auto":
        return impl
    return "im2col" if _on_cpu() and current().differentiated else "xla"


def pool_impl() -> str:
    impl = current().pool_impl
    if impl not in POOL_IMPLS:
        raise ValueError(f"unknown pool_impl {impl!r}; valid: {', '.join(POOL_IMPLS)}")
    return ("reshape" if _on_cpu() else "reduce_window") if impl == "auto" else impl


# Convolution.


def input_standardization(x: jax.Array, kind: str) -> jax.Array:
    """'dataset': the inputs as given (standardised with the training set's statistics);
    'per_image': each image shifted and scaled to mean 0 and std 1 on its own, so that a change
    of its brightness or contrast (an affine map of its pixels) does not reach the network."""
    if kind == "dataset":
        return x
    if kind != "per_image":
        raise ValueError(f"input normalisation must be one of {', '.join(INPUT_NORMS)}")
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    var = jnp.square(x - mean).mean(axis=(1, 2, 3), keepdims=True)
    return (x - mean) * lax.rsqrt(var + 1e-4)  # a blank image stays 0, not 0/0


def conv_padding(
    size: int, drop_last: tuple[bool, bool] = (False, False), mode: str = "SAME"
) -> Padding:
    """'SAME' or 'VALID' padding of a stride-1 `size` x `size` kernel as explicit (lo, hi) pairs.

    `drop_last` (rows, columns): one less at the high end, so the convolution does not compute
    its last output row / column. A 2x2 'VALID' pooling of an odd-sized map discards them anyway:
    on the 7x7 maps of the speedrun CNN that is 13 of 49 positions, 27% of the layer's FLOPs.
    """
    if mode not in PADDINGS:
        raise ValueError(f"padding must be one of {', '.join(PADDINGS)}, got {mode!r}")
    lo = (size - 1) // 2 if mode == "SAME" else 0
    hi = size - 1 - lo if mode == "SAME" else 0
    rows, cols = drop_last
    return ((lo, hi - rows), (lo, hi - cols))


def check_kernels_fit(
    kernel_sizes: Sequence[int], stem_patch: int, convs_per_block: int, padding: str, pool: str
) -> None:
    """Every kernel no larger than the map its block slides it over: a larger one sees only
    padding beyond the image, and compiled for minutes (kernel_sizes=100,100)."""
    side = 28 // stem_patch
    for i, size in enumerate(kernel_sizes):
        if size > side:
            raise ConfigError(
                f"kernel_sizes[{i}]={size} is larger than the {side}x{side} map that block "
                f"convolves; at most {side}"
            )
        for _ in range(convs_per_block):
            side = conv_output_size(side, size, padding)
        side = side // 2 if pool != "none" else side


def conv_output_size(size: int, kernel: int, mode: str) -> int:
    """The side of a stride-1 convolution's output map ('SAME' keeps it; 'VALID' shrinks it)."""
    if mode == "SAME":
        return size
    if size < kernel:
        raise ConfigError(
            f"padding='VALID' leaves a {size}x{size} map, too small for a {kernel}x{kernel} "
            "kernel; use smaller kernels, fewer blocks, or padding='SAME'"
        )
    return size - kernel + 1


def _explicit_padding(
    padding: Padding, shape: tuple[int, ...], size: int, stride: int
) -> tuple[tuple[int, int], tuple[int, int]]:
    if isinstance(padding, str):
        if padding not in ("SAME", "VALID"):
            raise ValueError(f"padding must be 'SAME', 'VALID' or (lo, hi) pairs, got {padding!r}")
        pads = lax.padtype_to_pads(shape[1:3], (size, size), (stride, stride), padding)
        return tuple(tuple(p) for p in pads)  # type: ignore[return-value]
    return padding


def im2col_conv(x: jax.Array, kernel: jax.Array, padding: Padding, stride: int = 1) -> jax.Array:
    """NHWC convolution as (N*H'*W', kh*kw*cin) @ (kh*kw*cin, cout).

    The patches are kernel-sized (strided) views of the padded input concatenated along the
    channel axis in (row, column, channel) order, the row-major layout of an HWIO kernel.
    `padding` is 'SAME', 'VALID' or explicit ((lo, hi), (lo, hi)) pairs (negative crops).
    """
    kh, kw, cin, cout = kernel.shape
    if kh != kw:
        raise ValueError(f"im2col needs a square kernel, got {kh}x{kw}")
    (top, bottom), (left, right) = _explicit_padding(padding, x.shape, kh, stride)
    zero = jnp.zeros((), x.dtype)
    x = lax.pad(x, zero, ((0, 0, 0), (top, bottom, 0), (left, right, 0), (0, 0, 0)))
    _, h, w, _ = x.shape
    oh, ow = (h - kh) // stride + 1, (w - kw) // stride + 1
    span_h, span_w = (oh - 1) * stride + 1, (ow - 1) * stride + 1
    patches = jnp.concatenate(
        [
            x[:, i : i + span_h : stride, j : j + span_w : stride, :]
            for i in range(kh)
            for j in range(kw)
        ],
        axis=-1,
    )
    w = kernel.reshape(kh * kw * cin, cout)
    return _patch_matmul(patches, w) if current().deterministic else jnp.dot(patches, w)


@jax.custom_vjp
def _patch_matmul(patches: jax.Array, w: jax.Array) -> jax.Array:
    """patches @ w, whose kernel gradient sums per-image products over the batch.

    The plain gradient is one product contracting over every position of every image; for a
    small kernel (a first layer's 5x5x1) XLA:CPU splits that long contraction by thread count,
    so its rounding depends on how many devices share the cores. Per-image products are short
    contractions that it does not split.
    """
    return jnp.dot(patches, w)


def _patch_matmul_fwd(patches, w):
    return jnp.dot(patches, w), (patches, w)


def _patch_matmul_bwd(res, g):
    patches, w = res
    d_patches = jnp.dot(g, w.T)
    per_image = jnp.einsum("nhwk,nhwc->nkc", patches, g)
    return d_patches, per_image.sum(0)


_patch_matmul.defvjp(_patch_matmul_fwd, _patch_matmul_bwd)


class Conv(nn.Module):
    """Square convolution (any stride) with optional bias; parameters laid out as `nn.Conv`'s.

    `padding` is 'SAME', 'VALID' or explicit ((lo, hi), (lo, hi)) pairs (see `conv_padding`).
    How it is computed comes from the layer context (`conv_impl`).
    """

    features: int
    kernel_size: int
    strides: int = 1
    padding: Padding = "SAME"
    use_bias: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k, s = self.kernel_size, self.strides
        kernel = self.param(
            "kernel", nn.initializers.lecun_normal(), (k, k, x.shape[-1], self.features)
        )
        bias = (
            self.param("bias", nn.initializers.zeros_init(), (self.features,))
            if self.use_bias
            else None
        )
        return conv(x, kernel, bias, self.padding, s, self.dtype)


def conv(
    x: jax.Array, kernel: jax.Array, bias: jax.Array | None, padding: Padding, strides: int,
    dtype: Any,
) -> jax.Array:  # fmt: skip
    """The convolution of `Conv` (and of nnx_layers.Conv) in the context's formulation."""
    k, s = kernel.shape[0], strides
    x = x.astype(dtype)
    if kernel.dtype != dtype:  # a no-op cast would break qwix's quantized kernels
        kernel = kernel.astype(dtype)
    if conv_impl() == "im2col":
        y = im2col_conv(x, kernel, padding, s)
    else:
        pads = _explicit_padding(padding, x.shape, k, s)
        y = lax.conv_general_dilated(
            x, kernel, (s, s), pads, dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
    return y if bias is None else y + bias.astype(dtype)


# Pooling.


def pool2x2(x: jax.Array, kind: str) -> jax.Array:
    """2x2 stride-2 'VALID' pooling (odd trailing rows/columns are dropped, as in nn.max_pool)."""
    if kind == "none":
        return x
    if kind not in ("max", "avg"):
        raise ValueError(f"unknown pool {kind!r}; valid: {', '.join(POOLS)}")
    if pool_impl() == "reduce_window":
        pool = nn.max_pool if kind == "max" else nn.avg_pool
        return pool(x, (2, 2), strides=(2, 2), padding="VALID")
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


# Layers with per-example randomness or batch statistics.


class Dropout(nn.Module):
    """Inverted dropout whose mask for an example depends only on (key, its global position).

    `nn.Dropout` draws one mask for the whole array, so the mask an example gets would depend on
    which device it sits on and how many examples share that device. Here each example's mask is
    drawn from the 'dropout' key folded with the example's position in the global batch (from the
    layer context), which makes training results independent of the device count.
    """

    rate: float

    @nn.compact
    def __call__(self, x: jax.Array, *, deterministic: bool) -> jax.Array:
        if deterministic or self.rate == 0.0:
            return x
        return dropout(x, self.rate, self.make_rng("dropout"))


def dropout(x: jax.Array, rate: float, key: jax.Array) -> jax.Array:
    """Inverted dropout, each example's mask from `key` folded with its global position."""
    positions = current().positions
    if positions is None:
        positions = jnp.arange(x.shape[0])
    keys = jax.vmap(jax.random.fold_in, (None, 0))(key, positions)
    keep_prob = 1.0 - rate
    keep = jax.vmap(lambda k: jax.random.bernoulli(k, keep_prob, x.shape[1:]))(keys)
    return jnp.where(keep, x / keep_prob, jnp.zeros((), x.dtype)).astype(x.dtype)


class BatchNorm(nn.Module):
    """Batch normalisation with statistics synchronised over the context's data axis.

    In training, the mean and mean square over the batch (and spatial) axes are averaged over
    `axis_name` (when the trainer sets one), i.e. they are the global batch's; running averages
    live in the 'batch_stats' collection and are what evaluation uses. Parameter and statistic
    names match `nn.BatchNorm` (scale, bias; mean, var).
    """

    momentum: float = 0.9
    epsilon: float = 1e-5
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        features = x.shape[-1]
        ra_mean = self.variable("batch_stats", "mean", jnp.zeros, (features,), jnp.float32)
        ra_var = self.variable("batch_stats", "var", jnp.ones, (features,), jnp.float32)
        scale = self.param("scale", nn.initializers.ones_init(), (features,))
        bias = self.param("bias", nn.initializers.zeros_init(), (features,))
        if train:
            mean, var = batch_statistics(x)
            if not self.is_initializing():
                m = self.momentum
                ra_mean.value = m * ra_mean.value + (1.0 - m) * mean
                ra_var.value = m * ra_var.value + (1.0 - m) * var
        else:
            mean, var = ra_mean.value, ra_var.value
        return normalize(x, mean, var, scale, bias, self.epsilon, self.dtype)


def batch_statistics(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(mean, variance) per channel of the global batch, on any device count."""
    # Per-example statistics, gathered from every device in global order, then averaged: the
    # global batch's statistics, summed in the same order on any device count.
    xf = x.astype(jnp.float32).reshape(x.shape[0], -1, x.shape[-1])
    stats = xf.mean(1), (xf * xf).mean(1)
    if (axis := current().axis_name) is not None:
        stats = lax.all_gather(stats, axis, axis=0, tiled=True)
    mean, mean_sq = stats[0].mean(0), stats[1].mean(0)
    # One materialised copy: the compiler may not recompute the reduction separately for the
    # normalisation and for the running averages (differently rounded).
    mean, mean_sq = lax.optimization_barrier((mean, mean_sq))
    return mean, jnp.maximum(mean_sq - mean * mean, 0.0)


def normalize(
    x: jax.Array, mean: jax.Array, var: jax.Array, scale: jax.Array, bias: jax.Array,
    epsilon: float, dtype: Any,
) -> jax.Array:  # fmt: skip
    inv = lax.rsqrt(var + epsilon) * scale
    return ((x.astype(jnp.float32) - mean) * inv + bias).astype(dtype)
