"""Separable and neighbourhood filters on float images of shape (..., H, W), on the device.

Every filter is a fixed sum of shifted copies of its input (zero outside the image), not a matmul
or a library convolution: an output pixel is then computed by the same sequence of float
operations whatever the batch shape, so an example's result never depends on the batch it shares
(a matmul's accumulation order may change with the batch size, and a one-ulp change can flip a
uint8 rounding). The images are 28x28, so the extra taps cost little.
"""

import jax
import jax.numpy as jnp
from jax import lax

TRUNCATE = 4.0  # Gaussian kernels stop at int(TRUNCATE * sigma + 0.5) px, as scipy.ndimage does


def shift(x: jax.Array, dy: int, dx: int, fill: float = 0.0) -> jax.Array:
    """out[..., i, j] = x[..., i + dy, j + dx], `fill` where that lies outside the image."""
    h, w = x.shape[-2:]
    r = max(abs(dy), abs(dx))
    if r == 0:
        return x
    pad = [(0, 0)] * (x.ndim - 2) + [(r, r), (r, r)]
    padded = jnp.pad(x, pad, constant_values=fill)
    return padded[..., r + dy : r + dy + h, r + dx : r + dx + w]


def correlate_axis(x: jax.Array, taps: jax.Array, axis: int) -> jax.Array:
    """out[i] = sum_k taps[k] * x[i + k - r] along `axis` (2r+1 taps), zero outside the image.

    Summed tap by tap over shifted copies: one fused loop, and each output accumulated in tap
    order. (A gather of windows times the taps, reduced, is rewritten by XLA into a dot whose
    accumulation order changes with the batch size, and it is 20x slower on CPU.)
    """
    r = (taps.shape[0] - 1) // 2
    n = x.shape[axis]
    pad = [(0, 0)] * x.ndim
    pad[axis] = (r, r)
    padded = jnp.pad(x, pad)
    out = taps[0] * lax.slice_in_dim(padded, 0, n, axis=axis)
    for k in range(1, 2 * r + 1):
        out = out + taps[k] * lax.slice_in_dim(padded, k, k + n, axis=axis)
    return out


def gaussian_taps(sigma: float | jax.Array, size: int, max_sigma: float | None = None) -> jax.Array:
    """Normalised Gaussian taps truncated as scipy.ndimage.gaussian_filter truncates them.

    A Python `sigma` gives exactly the taps that can reach an image of `size` pixels; a traced one
    gets those of `max_sigma` (default: all that can reach), zero beyond its own radius.
    """
    reach = size - 1
    if not isinstance(sigma, jax.Array):
        full = int(TRUNCATE * sigma + 0.5)
        radius = min(full, reach)
    else:
        full = reach if max_sigma is None else min(int(TRUNCATE * max_sigma + 0.5), reach)
        radius = full
    offsets = jnp.arange(-full, full + 1, dtype=jnp.float32)
    sigma = jnp.maximum(jnp.asarray(sigma, jnp.float32), 1e-3)  # sigma 0: a unit impulse
    taps = jnp.exp(-0.5 * (offsets / sigma) ** 2)
    taps = jnp.where(jnp.abs(offsets) <= jnp.floor(TRUNCATE * sigma + 0.5), taps, 0.0)
    taps = taps / taps.sum()
    return taps[full - radius : full + radius + 1]


def gaussian_blur(
    x: jax.Array, sigma: float | jax.Array, max_sigma: float | None = None
) -> jax.Array:
    """Gaussian smoothing of the last two axes, with zero ('constant') boundaries."""
    x = correlate_axis(x, gaussian_taps(sigma, x.shape[-2], max_sigma), axis=x.ndim - 2)
    return correlate_axis(x, gaussian_taps(sigma, x.shape[-1], max_sigma), axis=x.ndim - 1)


def sobel(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(d/dy, d/dx) by the unnormalised 3x3 Sobel kernels, as scipy.ndimage.sobel computes them."""
    smooth = jnp.array([1.0, 2.0, 1.0])
    diff = jnp.array([-1.0, 0.0, 1.0])
    rows, cols = x.ndim - 2, x.ndim - 1
    gy = correlate_axis(correlate_axis(x, diff, rows), smooth, cols)
    gx = correlate_axis(correlate_axis(x, smooth, rows), diff, cols)
    return gy, gx


def _disk_filter(x, radius, max_radius: int, reduce, neutral: float):
    """Reduce over the offsets within Euclidean distance `radius` (at most `max_radius`)."""
    radius = jnp.asarray(radius, jnp.float32)
    out = x
    for dy in range(-max_radius, max_radius + 1):
        for dx in range(-max_radius, max_radius + 1):
            if dy or dx:
                inside = dy * dy + dx * dx <= radius * radius
                out = reduce(out, jnp.where(inside, shift(x, dy, dx), neutral))
    return out


def max_filter(x: jax.Array, radius: float | jax.Array, max_radius: int = 3) -> jax.Array:
    """Grey dilation by a disk: thickens bright strokes (radius 0 is the identity)."""
    return _disk_filter(x, radius, max_radius, jnp.maximum, -jnp.inf)


def min_filter(x: jax.Array, radius: float | jax.Array, max_radius: int = 3) -> jax.Array:
    """Grey erosion by a disk, background outside the image: thins bright strokes."""
    return _disk_filter(x, radius, max_radius, jnp.minimum, jnp.inf)
