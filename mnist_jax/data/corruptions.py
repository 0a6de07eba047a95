"""MNIST-C style corruptions (Mu & Gilmer 2019) computed on the device, for robustness evaluation.

Each corruption is `fn(images uint8 (N, 28, 28), keys (N,), severity) -> uint8 (N, 28, 28)`:
severity is a float on the corruption's own physical scale (degrees, px, a noise std, ...), 0 is
the exact identity, and its randomness comes from each example's key alone. The defaults are the
strengths of the published MNIST-C set (its corruptions.py) where it has that corruption, and
comparable ones elsewhere: a good CNN loses a few points on most while digits stay legible.
`corrupt` derives the keys from (seed, name, example index), so a split corrupted in chunks
equals the split corrupted whole.
"""

import dataclasses
import functools
import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mnist_jax.core.errors import ConfigError
from mnist_jax.data import filters, patterns
from mnist_jax.data.augment import bilinear, draw, elastic_fields, to_uint8, warp

SIZE = 28


@dataclasses.dataclass(frozen=True)
class Corruption:
    """A registered corruption: `fn(images, keys, severity)`, severity in [0, max_severity]."""

    name: str
    fn: Callable[[jax.Array, jax.Array, Any], jax.Array]
    default_severity: float
    max_severity: float
    unit: str  # one line: what the severity measures, and how randomness enters
    family: str  # one of FAMILIES: what a figure or table groups it under


# The kinds of corruption, in the order figures show them: pixel noise, blur, geometric
# warps, changes of intensity over the whole image (brightness, contrast, fog), occlusion of a
# part of it (stripes, lines, blobs), and changes of the strokes (edges, dilation, erosion).
FAMILIES = ("noise", "blur", "geometry", "intensity", "occlusion", "stroke")
CORRUPTIONS: dict[str, Corruption] = {}


def _register(name: str, family: str, default: float, maximum: float, unit: str):
    """Add `f` to CORRUPTIONS, made the exact identity (bitwise) at severity 0."""
    assert family in FAMILIES, family

    def wrap(f):
        @functools.wraps(f)
        def fn(images, keys, severity):
            s = jnp.asarray(severity, jnp.float32)
            return jnp.where(s > 0, f(images, keys, s), images)

        CORRUPTIONS[name] = Corruption(name, fn, default, maximum, unit, family)
        return fn

    return wrap


def _unit(images: jax.Array) -> jax.Array:
    return images.astype(jnp.float32) / 255.0


def _from_unit(x: jax.Array) -> jax.Array:
    return to_uint8(jnp.clip(x, 0.0, 1.0) * 255.0)


def _per_key(keys: jax.Array, fn: Callable) -> Any:
    """fn(key) for every example's key."""
    return jax.vmap(fn)(keys)


def _sign(key: jax.Array) -> jax.Array:
    return jnp.where(jax.random.bernoulli(key), 1.0, -1.0)


def _sample_at(x: jax.Array, dy: jax.Array, dx: jax.Array) -> jax.Array:
    """Bilinear samples of (N, H, W) float images at each pixel plus (dy, dx) (N, ..., H, W)."""
    rows, cols = jnp.meshgrid(jnp.arange(SIZE), jnp.arange(SIZE), indexing="ij")
    sample = jax.vmap(bilinear, (None, 0, 0)) if dy.ndim == 4 else bilinear
    return jax.vmap(sample)(x, rows + dy, cols + dx)


# ---- noise ----


# MNIST-C's levels are 0.08 .. 0.38 (not in its final set).
@_register("gaussian_noise", "noise", 0.3, 1.0, "noise std, fraction of full scale")
def gaussian_noise(images, keys, s):
    noise = _per_key(keys, lambda k: draw(jax.random.normal, k, (SIZE, SIZE)))
    return _from_unit(_unit(images) + s * noise)


# MNIST-C: 3 photons per unit intensity.
@_register("shot_noise", "noise", 0.58, 1.0, "Poisson noise std of a white pixel (photons = 1/s^2)")
def shot_noise(images, keys, s):
    photons = 1.0 / jnp.maximum(s, 1e-3) ** 2
    x = _unit(images).reshape(len(images), -1)  # flat: see augment.draw
    counts = jax.vmap(lambda k, x: jax.random.poisson(k, x * photons))(keys, x)
    counts = counts.reshape(images.shape)
    return _from_unit(counts.astype(jnp.float32) / photons)


# MNIST-C: salt and pepper, amount 0.17.
@_register(
    "impulse_noise", "noise", 0.17, 1.0, "fraction of pixels set to black or white (half each)"
)
def impulse_noise(images, keys, s):
    u = _per_key(keys, lambda k: draw(jax.random.uniform, k, (SIZE, SIZE)))
    out = jnp.where(u < s / 2, 0, jnp.where(u < s, 255, images))
    return out.astype(jnp.uint8)


# ---- blur ----


# MNIST-C's levels are 1 .. 6 px (not in its final set).
@_register("gaussian_blur", "blur", 1.5, 4.0, "Gaussian std in px")
def gaussian_blur(images, keys, s):
    return to_uint8(filters.gaussian_blur(images.astype(jnp.float32), s, max_sigma=4.0))


# MNIST-C: blur 0.7 px, local pixel swaps by up to 1 px (twice), blur again.
@_register(
    "glass_blur", "blur", 1.5, 4.0, "max local pixel displacement in px (random, uniform per px)"
)
def glass_blur(images, keys, s):
    """Blur (std 0.7 px), move every pixel by a random integer offset within +-s, blur again."""
    x = filters.gaussian_blur(images.astype(jnp.float32), 0.7)
    offsets = jnp.round(
        s * _per_key(keys, lambda k: draw(jax.random.uniform, k, (2, SIZE, SIZE), minval=-1))
    )
    x = _sample_at(x, offsets[:, 0], offsets[:, 1])
    return to_uint8(filters.gaussian_blur(x, 0.7))


MOTION_SAMPLES = 15


# MNIST-C: ImageMagick motion blur, radius 10 and sigma 3 px, angle in +-45 deg.
@_register("motion_blur", "blur", 6.0, 14.0, "blur length in px; direction uniform in +-45 deg")
def motion_blur(images, keys, s):
    """Average of images along a centred line segment: a camera moving during the exposure."""
    angle = jnp.deg2rad(_per_key(keys, lambda k: jax.random.uniform(k, minval=-45.0, maxval=45.0)))
    t = s * jnp.linspace(-0.5, 0.5, MOTION_SAMPLES)
    dy = -(jnp.sin(angle)[:, None] * t)[..., None, None] + jnp.zeros((SIZE, SIZE))
    dx = (jnp.cos(angle)[:, None] * t)[..., None, None] + jnp.zeros((SIZE, SIZE))
    return to_uint8(_sample_at(images.astype(jnp.float32), dy, dx).mean(axis=1))


# ---- geometry (the augmentation's single bilinear resampling) ----


# MNIST-C: 0.4 rad (23 deg), shear 0.4 rad, scale 0.7, translate 3 px per axis, random signs.
@_register("rotate", "geometry", 23.0, 180.0, "degrees, random sign")
def rotate(images, keys, s):
    return warp(images, rotation=s * _per_key(keys, _sign))


@_register("shear", "geometry", 23.0, 60.0, "degrees of horizontal shear, random sign")
def shear(images, keys, s):
    return warp(images, shear=s * _per_key(keys, _sign))


@_register(
    "scale",
    "geometry",
    0.3,
    0.9,
    "fraction by which the digit shrinks (scale 1 - s); no randomness",
)
def scale(images, keys, s):
    return warp(images, scale=1.0 - s)


@_register("translate", "geometry", 3.0, 14.0, "px along each axis, random sign per axis")
def translate(images, keys, s):
    signs = _per_key(keys, lambda k: jnp.where(jax.random.bernoulli(k, shape=(2,)), 1.0, -1.0))
    return warp(images, translate=s * signs)


ELASTIC_SIGMA = 4.0


# Simard et al. (2003)'s augmentation strength; MNIST-C's elastic is not in its final set.
@_register("elastic", "geometry", 34.0, 100.0, "elastic alpha in px (Simard et al.), sigma 4 px")
def elastic(images, keys, s):
    return warp(images, displacement=elastic_fields(keys, (SIZE, SIZE), s, ELASTIC_SIGMA))


# ---- intensity ----


# MNIST-C: +0.5 to the HSV value, which for grey images adds 0.5.
@_register("brightness", "intensity", 0.5, 1.0, "added intensity, fraction of full scale")
def brightness(images, keys, s):
    return _from_unit(_unit(images) + s)


# MNIST-C's levels keep 0.4 .. 0.05 of the contrast (not in its final set).
@_register("contrast", "intensity", 0.7, 1.0, "fraction of contrast removed about the image mean")
def contrast(images, keys, s):
    x = _unit(images)
    mean = x.mean(axis=(1, 2), keepdims=True)
    return _from_unit((x - mean) * (1.0 - s) + mean)


# MNIST-C: columns 0..6 and 21..27 inverted.
@_register(
    "stripe", "occlusion", 7.0, 14.0, "width in px of the inverted band at the left and right edges"
)
def stripe(images, keys, s):
    cols = jnp.arange(SIZE)
    band = (cols < s) | (cols >= SIZE - s)
    return jnp.where(band, 255 - images, images)


# ---- occlusion and texture ----


def _add_ink(images, ink, s):
    return _from_unit(_unit(images) + s * ink)


# MNIST-C's line, dotted line and zigzag have no severity: full-intensity ink, as here at 1.
@_register(
    "dotted_line", "occlusion", 1.0, 1.0, "ink intensity of a random dotted line across the image"
)
def dotted_line(images, keys, s):
    return _add_ink(images, _per_key(keys, patterns.dotted_line), s)


@_register(
    "zigzag",
    "occlusion",
    1.0,
    1.0,
    "ink intensity of a random zigzag line (period 4 px, 2 px high)",
)
def zigzag(images, keys, s):
    return _add_ink(images, _per_key(keys, patterns.zigzag), s)


# MNIST-C adds 3.0 times a plasma fractal normalised over a 256 px map, of which its 28 px crop
# spans only part of [0, 1]; this fractal spans [0, 1] within the image, so 1.5 is comparable.
@_register(
    "fog", "intensity", 1.5, 5.0, "weight of the fractal fog layer added before renormalising"
)
def fog(images, keys, s):
    x = _unit(images)
    peak = x.max(axis=(1, 2), keepdims=True)
    return _from_unit((x + s * _per_key(keys, patterns.fractal)) * peak / (peak + s))


# MNIST-C: its severity 4 (mud); opacity 1 is that.
@_register(
    "spatter", "occlusion", 1.0, 1.0, "opacity of grey mud blobs (MNIST-C severity 4 shapes)"
)
def spatter(images, keys, s):
    m = s * _per_key(keys, patterns.mud)
    return _from_unit(_unit(images) * (1 - m) + m * 63 / 255)  # grey mud over the digit


# MNIST-C: the edge map replaces the image (skimage.feature.canny defaults).
@_register("canny_edges", "stroke", 1.0, 1.0, "blend weight of the Canny edge map (1 = edges only)")
def canny_edges(images, keys, s):
    x = _unit(images)
    return _from_unit((1 - s) * x + s * patterns.canny(x))


# Not in MNIST-C: stroke thickness changes, as between writers and pens.
@_register("dilate", "stroke", 1.0, 3.0, "radius in px of a grey dilation (thicker strokes)")
def dilate(images, keys, s):
    return to_uint8(filters.max_filter(images.astype(jnp.float32), s))


@_register("erode", "stroke", 1.0, 3.0, "radius in px of a grey erosion (thinner strokes)")
def erode(images, keys, s):
    return to_uint8(filters.min_filter(images.astype(jnp.float32), s))


# ---- API ----


def get(name: str) -> Corruption:
    if name not in CORRUPTIONS:
        raise ConfigError(f"unknown corruption {name!r}; valid: {', '.join(CORRUPTIONS)}")
    return CORRUPTIONS[name]


def parse_names(text: str) -> list[str]:
    """A CLI value: 'all', 'none' (or ''), or comma-separated corruption names, in order."""
    text = text.strip()
    if text == "all":
        return list(CORRUPTIONS)
    if text in ("none", ""):
        return []
    names = [name.strip() for name in text.split(",")]
    for name in names:
        if name not in CORRUPTIONS:
            raise ConfigError(
                f"unknown corruption {name!r}; valid: 'all', 'none' or a comma-separated list of "
                f"{', '.join(CORRUPTIONS)}"
            )
    return list(dict.fromkeys(names))


def _severity(name: str, severity: Any) -> float:
    corruption = get(name)
    if severity is None:
        return corruption.default_severity
    if not (
        isinstance(severity, int | float)
        and not isinstance(severity, bool)
        and math.isfinite(severity)
        and 0 <= severity <= corruption.max_severity
    ):
        raise ConfigError(
            f"severity {severity!r} for corruption {name!r} is invalid: must be in "
            f"[0, {corruption.max_severity}] ({corruption.unit})"
        )
    return float(severity)


def _check_images(images: Any) -> jax.Array:
    images = jnp.asarray(images)
    if images.dtype != jnp.uint8 or images.ndim != 3 or images.shape[1:] != (SIZE, SIZE):
        raise ValueError(f"corruptions expect uint8 (N, 28, 28), got {images.dtype} {images.shape}")
    return images


@functools.partial(jax.jit, static_argnames="names")
def _corrupt(images, seed, start, severities, names):
    index = start + jnp.arange(images.shape[0])
    out = {}
    for name, severity in zip(names, severities, strict=True):
        base = jax.random.fold_in(jax.random.key(seed), zlib.crc32(name.encode()) & 0x7FFFFFFF)
        keys = jax.vmap(jax.random.fold_in, (None, 0))(base, index)
        out[name] = CORRUPTIONS[name].fn(images, keys, severity)
    return out


def corrupt_many(
    images: Any,
    names: Sequence[str] | None = None,
    *,
    seed: int = 0,
    start: int = 0,
    severities: Mapping[str, float] | None = None,
) -> dict[str, jax.Array]:
    """Several corruptions of the same images as one compiled program (all of them by default).

    Each result equals `corrupt(images, name, ...)`; severities default per corruption. The
    severities are arguments of the program, so changing them does not recompile it.
    """
    names = tuple(CORRUPTIONS) if names is None else tuple(names)
    for what, value in (("seed", seed), ("start", start)):
        if not isinstance(value, int | np.integer) or not 0 <= value < 2**31:
            raise ConfigError(
                f"corruption {what}={value!r} is invalid: must be an int in [0, 2^31)"
            )
    severities = dict(severities or {})
    for name in severities:
        get(name)
    values = tuple(jnp.float32(_severity(name, severities.get(name))) for name in names)
    out = _corrupt(_check_images(images), seed, start, values, names=names)
    return {name: out[name] for name in names}  # in the order asked (jit sorts dict keys)


def corrupt(
    images: Any, name: str, *, seed: int = 0, severity: float | None = None, start: int = 0
) -> jax.Array:
    """Corrupt uint8 images (N, 28, 28) whose first example is example `start` of its split.

    Example i's key is fold_in(fold_in(key(seed), crc32(name)), start + i), so chunks of a split
    give the same images as the whole split. One compiled program per corruption and batch
    shape; the severity is an argument of it, not a constant.
    """
    severities = None if severity is None else {name: severity}
    return corrupt_many(images, (name,), seed=seed, start=start, severities=severities)[name]


def grid(
    image: Any, *, seed: int = 0, index: int = 0, names: Sequence[str] | None = None
) -> dict[str, np.ndarray]:
    """One uint8 digit (28, 28) under every corruption (or `names`) at its default severity.

    For a figure; `index` is the digit's position in its split, so the images are those
    `corrupt` gives it there.
    """
    out = corrupt_many(jnp.asarray(image)[None], names, seed=seed, start=index)
    return {name: np.asarray(images[0]) for name, images in out.items()}
