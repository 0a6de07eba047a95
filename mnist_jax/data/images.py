"""User images in MNIST's form: read any PNG/JPEG, then normalise it the way MNIST was made.

MNIST (LeCun et al.) took each binary NIST digit, size-normalised it to fit a 20x20 box keeping
its aspect ratio (anti-aliasing makes the result grey), and centred that in a 28x28 field by its
centre of mass. A model trained on MNIST sees only such images, so a photo, a scan or a canvas
drawing must go through the same steps before it is classified; `to_mnist` does them:

1. grayscale: ITU-R BT.601 luma (as Pillow's "L"); an alpha channel is flattened first
   (`flatten_alpha`);
2. polarity: MNIST is a white digit on black. The background level is the median of the image's
   outermost ring of pixels; if it is nearer the brightest value than the darkest, the input is
   dark ink on a light ground (paper, a canvas) and is inverted;
3. contrast: the background level becomes 0 and the brightest pixel 255; an image whose
   brightest pixel is less than MIN_CONTRAST grey levels above its background has no ink and
   raises DataError;
4. bounding box of the pixels brighter than INK_THRESHOLD of the maximum (faint noise and soft
   shadows stay outside it);
5. resize so that the longer side is 20 px, aspect kept: Lanczos (Pillow's, which widens its
   kernel when shrinking, so it anti-aliases like an area average);
6. paste into 28x28 with an integer shift that puts the centre of mass at pixel (14, 14)
   (row, column; MNIST's own mean is (13.99, 14.00)), clipped so the digit stays inside.

A digit that is already in MNIST form passes through almost unchanged (its ink box is already
20 px on the longer side and it is already centred).
"""

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from mnist_jax.core.errors import DataError

SIZE = 28  # the output field
BOX = 20  # the longer side of the digit in that field
CENTER = 14.0  # where the centre of mass lands (row and column, pixel indices)
INK_THRESHOLD = 0.3  # of the maximum: pixels above it define the digit's bounding box
HALO = 2  # output pixels around that box kept, so the faint edge of the strokes is not cut off
MIN_CONTRAST = 24.0  # grey levels (of 255) between background and ink below which there is no ink
LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601, as Pillow's RGB -> L
# The most pixels a digit image may have (a 6000x4000 photo), checked from the header before
# decoding: Pillow's own limit (179M) let a 176 KB PNG of 13000x13000 take 4.5 GB and 16 s.
MAX_PIXELS = 24_000_000


def read_image(path: str | Path) -> np.ndarray:
    """Reads an image file as uint8: (H, W) grayscale or (H, W, 3) RGB, alpha already flattened.

    Palette images are expanded, 16-bit grayscale scaled to 8 bits, EXIF rotation applied (phone
    photos) and transparency composited as `flatten_alpha` explains.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"image file {path} does not exist (or is not a file)")
    try:
        with Image.open(path) as image:
            if image.width * image.height > MAX_PIXELS:
                raise DataError(
                    f"image file {path} is {image.width}x{image.height} pixels; at most "
                    f"{MAX_PIXELS:,} are read (scale it down)"
                )
            image = ImageOps.exif_transpose(image)
            array = _to_array(image)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(
            f"cannot read image file {path}: {reason} (expected a PNG or JPEG image)"
        ) from None
    if array.ndim == 3 and array.shape[-1] in (2, 4):
        array = np.rint(flatten_alpha(array.astype(np.float64))).astype(np.uint8)
    return array


def _to_array(image: Image.Image) -> np.ndarray:
    """Pillow image -> uint8 array with 1 (squeezed), 2 (LA), 3 (RGB) or 4 (RGBA) channels."""
    mode = image.mode
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode == "PA" or mode == "RGBa":
        image = image.convert("RGBA")
    elif mode == "La":
        image = image.convert("LA")
    elif mode == "1":
        image = image.convert("L")
    elif mode.startswith("I"):  # 16/32-bit integer grayscale: 16-bit data in practice
        array = np.asarray(image, dtype=np.float64) / 257.0
        return np.rint(np.clip(array, 0, 255)).astype(np.uint8)
    elif mode == "F":
        return np.rint(np.clip(np.asarray(image, dtype=np.float64), 0, 255)).astype(np.uint8)
    elif mode not in ("L", "LA", "RGB", "RGBA"):
        image = image.convert("RGB")  # CMYK, YCbCr, LAB, HSV
    return np.asarray(image, dtype=np.uint8)


def flatten_alpha(values: np.ndarray) -> np.ndarray:
    """Float (H, W, 2) gray+alpha or (H, W, 4) RGBA on 0..255 -> float grayscale (H, W).

    Transparent pixels take the background's grey level. If most of the image is opaque, the
    opaque part holds the background: its median luma is used. If the opaque part is a minority,
    it is ink on a transparent sheet (a canvas export, a sticker): the background is white under
    dark ink and black under light ink, so the strokes always stand out.
    """
    color, alpha = values[..., :-1], values[..., -1] / 255.0
    luma = color[..., 0] if color.shape[-1] == 1 else color @ LUMA
    opaque = alpha > 0.5
    if opaque.mean() > 0.5:
        background = float(np.median(luma[opaque]))
    elif opaque.any():
        background = 255.0 if np.average(luma[opaque], weights=alpha[opaque]) < 128 else 0.0
    else:
        background = 255.0
    return luma * alpha + background * (1.0 - alpha)


def grayscale(image: np.ndarray) -> np.ndarray:
    """Any (H, W), (H, W, 1..4) image -> float (H, W) on 0..255 (floats are taken as 0..1)."""
    array = np.asarray(image)
    if array.dtype.kind not in "uif" or array.dtype == np.bool_:
        raise DataError(f"an image must hold numbers, got dtype {array.dtype}")
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (2, 3, 4)):
        raise DataError(
            f"an image must have shape (H, W) or (H, W, C) with C in 1..4, got {array.shape}"
        )
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise DataError(f"an image must have at least one pixel, got shape {array.shape}")
    if array.dtype.kind == "f":
        if not np.isfinite(array).all():
            raise DataError("an image must not contain NaN or infinite values")
        values = np.clip(array.astype(np.float64), 0.0, 1.0) * 255.0
    else:
        values = array.astype(np.float64) * (255.0 / np.iinfo(array.dtype).max)
    if values.ndim == 3 and values.shape[-1] in (2, 4):
        return flatten_alpha(values)
    return values @ LUMA if values.ndim == 3 else values


def to_mnist(image: np.ndarray, *, source: str = "image") -> np.ndarray:
    """Any digit image (grayscale or colour, either polarity, any size) -> uint8 (28, 28).

    Integer arrays are read on their dtype's full range, floats as 0..1. `source` names the
    image in the error raised when it holds no digit (e.g. the file it came from).
    """
    luma = grayscale(image)
    border = np.concatenate([luma[0], luma[-1], luma[:, 0], luma[:, -1]])
    background = float(np.median(border))
    low, high = float(luma.min()), float(luma.max())
    if background > (low + high) / 2:  # dark ink on a light ground
        luma, background = 255.0 - luma, 255.0 - background
    contrast = float(luma.max()) - background
    if contrast < MIN_CONTRAST:
        raise DataError(
            f"{source} has no digit: its brightest ink is {contrast:.0f} grey levels from the "
            f"background, at least {MIN_CONTRAST:.0f} are needed (is it blank?)"
        )
    ink = np.clip((luma - background) / contrast, 0.0, 1.0)
    return _center(*_fit_box(ink))


def _fit_box(ink: np.ndarray) -> tuple[np.ndarray, int]:
    """The digit scaled so that its ink box's longer side is BOX pixels (aspect kept), 0..1.

    The box holds the pixels above INK_THRESHOLD; a margin of HALO output pixels around it comes
    along at the same scale, so the digit's faint anti-aliased edge is kept, not cut off.
    Returns the scaled patch and that margin in output pixels.
    """
    rows = np.flatnonzero((ink > INK_THRESHOLD).any(axis=1))
    cols = np.flatnonzero((ink > INK_THRESHOLD).any(axis=0))
    longer = max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1
    scale = BOX / longer
    margin = int(np.ceil(HALO / scale))
    padded = np.pad(ink, margin)
    crop = padded[rows[0] : rows[-1] + 2 * margin + 1, cols[0] : cols[-1] + 2 * margin + 1]
    height, width = crop.shape
    size = (max(1, round(width * scale)), max(1, round(height * scale)))  # Pillow: (W, H)
    if size != (width, height):
        resized = Image.fromarray(crop.astype(np.float32)).resize(size, Image.Resampling.LANCZOS)
        crop = np.clip(np.asarray(resized, dtype=np.float64), 0.0, 1.0)
    # Thin strokes lose peak brightness when shrunk; MNIST digits peak at 255.
    return crop / crop.max(), round(margin * scale)


def _center(patch: np.ndarray, halo: int) -> np.ndarray:
    """SIZE x SIZE with the patch's centre of mass at (CENTER, CENTER).

    The shift is an integer, as MNIST's was, and clipped so that the ink box (the patch less its
    `halo`) stays inside the field; only the faint halo may be cut at the edge.
    """
    height, width = patch.shape
    mass = patch.sum()
    row = float((patch.sum(axis=1) * np.arange(height)).sum() / mass)
    col = float((patch.sum(axis=0) * np.arange(width)).sum() / mass)
    top = int(np.clip(round(CENTER - row), -halo, SIZE - height + halo))
    left = int(np.clip(round(CENTER - col), -halo, SIZE - width + halo))
    out = np.zeros((SIZE + 2 * height, SIZE + 2 * width), dtype=np.float64)
    out[height + top : 2 * height + top, width + left : 2 * width + left] = patch
    out = out[height : height + SIZE, width : width + SIZE]
    return np.rint(out * 255.0).astype(np.uint8)


def load_digit(path: str | Path) -> np.ndarray:
    """An image file in MNIST's form, uint8 (28, 28); errors name the file."""
    return to_mnist(read_image(path), source=f"image file {path}")
