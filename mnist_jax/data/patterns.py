"""Procedural patterns for the corruptions, one 28x28 float image per key, on the device.

Lines, zigzags, fractal fog and mud blobs drawn after MNIST-C's recipes (Mu & Gilmer 2019,
corruptions.py), and a Canny edge map after skimage's; all in [0, 1], all pure jnp.
"""

import jax
import jax.numpy as jnp
import numpy as np

from mnist_jax.data import filters
from mnist_jax.data.augment import draw

SIZE = 28
FOG_OCTAVES, FOG_DECAY = 5, 1.4


def integers(key: jax.Array, low: tuple[int, ...], high: tuple[int, ...]) -> jax.Array:
    """Integers uniform in [low[i], high[i]), as floats (one uniform draw: cheaper to compile
    than randint)."""
    low_, high_ = jnp.array(low, jnp.float32), jnp.array(high, jnp.float32)
    return jnp.floor(low_ + (high_ - low_) * jax.random.uniform(key, low_.shape))


def line_ink(distance: jax.Array) -> jax.Array:
    """MNIST-C's line profile: 1 on the line, log(1 - d/2.3) + 1 off it, 0 beyond ~1.45 px
    (of the perpendicular distance; MNIST-C measures it vertically)."""
    d = jnp.minimum(distance, 2.3 - 1e-6)
    return jnp.clip(jnp.log(1.0 - d / 2.3) + 1.0, 0.0, 1.0)


def polyline_distance(points: jax.Array) -> jax.Array:
    """Distance of every pixel centre to a polyline of (row, col) vertices (V, 2)."""
    p = jnp.stack(jnp.meshgrid(jnp.arange(SIZE), jnp.arange(SIZE), indexing="ij"), -1)
    a, b = points[:-1, None, None, :], points[1:, None, None, :]
    ab, ap = b - a, p[None].astype(jnp.float32) - a
    t = jnp.clip((ap * ab).sum(-1) / jnp.maximum((ab * ab).sum(-1), 1e-6), 0.0, 1.0)
    return jnp.linalg.norm(ap - t[..., None] * ab, axis=-1).min(axis=0)


def dotted_line(key: jax.Array) -> jax.Array:
    """A line from a random row of column 0 to a random row of column 27, 2 px on, 2 px off."""
    r0, r1 = integers(key, (0, 0), (SIZE - 1, SIZE - 1))
    line = line_ink(polyline_distance(jnp.array([[r0, 0.0], [r1, SIZE - 1.0]])))
    return line * ((jnp.arange(SIZE) // 2) % 2 == 1)


def zigzag(key: jax.Array) -> jax.Array:
    """MNIST-C's zigzag: column 2 to 25 from a random row, rising by -5..4 rows, with teeth
    2 px high every 4 px along it."""
    r0, rise = integers(key, (0, -5), (SIZE - 1, 5))
    theta = jnp.arctan(rise / 23.0)
    length = 23.0 / jnp.cos(theta)
    along = jnp.array([0.0, 2, 6, 10, 14, 18, 22, 0]).at[-1].set(length)
    across = jnp.array([0.0, 2, -2, 2, -2, 2, -2, 0]).at[-1].set(-1.0 / (length - 20.0))
    rows = r0 + jnp.sin(theta) * along + jnp.cos(theta) * across
    cols = 2.0 + jnp.cos(theta) * along - jnp.sin(theta) * across
    return line_ink(polyline_distance(jnp.stack([rows, cols], -1)))


def _upsample(grid: jax.Array) -> jax.Array:
    """Bilinear resize of a (g, g) grid to (SIZE, SIZE), corners aligned."""
    g = grid.shape[0]
    pos = np.arange(SIZE) * (g - 1) / (SIZE - 1)
    i0 = np.minimum(np.floor(pos).astype(int), g - 2)
    w = jnp.asarray(pos - i0, jnp.float32)
    rows = (1 - w)[:, None] * grid[i0] + w[:, None] * grid[i0 + 1]
    return (1 - w) * rows[:, i0] + w * rows[:, i0 + 1]


def fractal(key: jax.Array) -> jax.Array:
    """Plasma-like noise in [0, 1]: octaves on grids of 3..33 nodes, amplitude / 1.4 per octave
    (MNIST-C's diamond-square 'wibble' decay for fog)."""
    sizes = [2 ** (o + 1) + 1 for o in range(FOG_OCTAVES)]
    nodes = jax.random.uniform(key, (sum(g * g for g in sizes),))  # one flat draw
    ends = np.cumsum([g * g for g in sizes])
    total = sum(
        FOG_DECAY**-o * _upsample(nodes[end - g * g : end].reshape(g, g))
        for o, (g, end) in enumerate(zip(sizes, ends, strict=True))
    )
    return (total - total.min()) / (total.max() - total.min())


def mud(key: jax.Array) -> jax.Array:
    """MNIST-C's spatter (severity 4): smoothed Gaussian noise thresholded into blobs, whose
    smoothed mask is kept where it exceeds 0.8."""
    liquid = filters.gaussian_blur(0.3 * draw(jax.random.normal, key, (SIZE, SIZE)), 1.0)
    m = filters.gaussian_blur((liquid > 0).astype(jnp.float32), 1.5)
    return jnp.where(m < 0.8, 0.0, m)


def canny(x: jax.Array) -> jax.Array:
    """Canny edges of [0, 1] images (..., H, W) as 0/1, with skimage.feature.canny's defaults:
    Gaussian sigma 1, Sobel magnitude thresholds 0.1 (weak) and 0.2 (strong)."""
    gy, gx = filters.sobel(filters.gaussian_blur(x, 1.0))
    mag = jnp.hypot(gy, gx)
    direction = jnp.round((jnp.arctan2(gy, gx) % jnp.pi) / (jnp.pi / 4)).astype(jnp.int32) % 4
    offsets = [(0, 1), (1, 1), (1, 0), (1, -1)]  # (row, col) along the gradient, per direction
    which = [direction == i for i in range(4)]
    ahead = jnp.select(which, [filters.shift(mag, dy, dx) for dy, dx in offsets])
    behind = jnp.select(which, [filters.shift(mag, -dy, -dx) for dy, dx in offsets])
    thin = jnp.where((mag >= ahead) & (mag >= behind), mag, 0.0)  # non-maximum suppression
    strong, weak = thin >= 0.2, thin >= 0.1
    for _ in range(3):  # hysteresis, three steps: weak edges connected to strong ones
        strong = strong | (weak & (filters.max_filter(strong.astype(jnp.float32), 1.5) > 0))
    return strong.astype(jnp.float32)
