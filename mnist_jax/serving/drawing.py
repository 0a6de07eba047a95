"""The body of POST /predict and its answer: a drawing checked value by value, brought to
MNIST's form, and every model's probabilities (the HTTP side is server.py).

Request: {"width": W, "height": H, "pixels": [W*H numbers]}, one grayscale image, row-major,
values 0..255, either polarity; W and H integers in MIN_SIDE..MAX_SIDE.
"""

import json
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any, Protocol

import numpy as np

from mnist_jax.core.errors import DataError
from mnist_jax.data import images

MIN_SIDE, MAX_SIDE = 8, 1024  # accepted width and height of a drawing, pixels
_NUMBER = (int, float)


class Predictor(Protocol):
    """The models behind the page: names, and class probabilities for a batch of digits."""

    @property
    def names(self) -> Sequence[str]: ...

    def predict(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """uint8 (N, 28, 28) MNIST-form digits -> {name: (N, 10) probabilities}."""
        ...


class RequestError(Exception):
    """A request the server refuses: an HTTP status and a one-line reason for the client."""

    def __init__(self, status: HTTPStatus, message: str, **extra: Any):
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra


def parse_drawing(body: bytes) -> np.ndarray:
    """The JSON body of POST /predict -> float (H, W) grayscale; RequestError(400) if malformed."""

    def reject(constant: str) -> None:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"{constant} is not a valid pixel value")

    try:
        request = json.loads(body.decode("utf-8"), parse_constant=reject)
    # ValueError: also an integer of over 4,300 digits (Python's limit on int('...')).
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"the body is not valid JSON ({e})") from None
    if not isinstance(request, dict):
        raise RequestError(HTTPStatus.BAD_REQUEST, 'expected a JSON object {"width", ...}')
    missing = [key for key in ("width", "height", "pixels") if key not in request]
    if missing:
        raise RequestError(
            HTTPStatus.BAD_REQUEST,
            f"missing field(s) {missing}; expected "
            '{"width": W, "height": H, "pixels": [W*H grayscale values 0..255]}',
        )
    sides = {}
    for key in ("width", "height"):
        value = request[key]
        if type(value) is not int or not MIN_SIDE <= value <= MAX_SIDE:
            raise RequestError(
                HTTPStatus.BAD_REQUEST,
                f"{key} must be an integer in {MIN_SIDE}..{MAX_SIDE}, got {value!r:.40}",
            )
        sides[key] = value
    pixels = request["pixels"]
    expected = sides["width"] * sides["height"]
    if not isinstance(pixels, list) or len(pixels) != expected:
        got = f"{len(pixels)} values" if isinstance(pixels, list) else type(pixels).__name__
        raise RequestError(
            HTTPStatus.BAD_REQUEST,
            f"pixels must be a flat list of width*height = {expected} numbers, got {got}",
        )
    # Checked in Python before numpy sees them: a 4,000-digit integer overflows float64.
    if not all(type(value) in _NUMBER and 0 <= value <= 255 for value in pixels):
        bad = next(v for v in pixels if not (type(v) in _NUMBER and 0 <= v <= 255))
        shown = f"{str(bad)[:20]}... ({len(str(bad))} digits)" if type(bad) is int else repr(bad)
        raise RequestError(
            HTTPStatus.BAD_REQUEST, f"pixels must all be numbers 0..255, found {shown:.60}"
        )
    return np.asarray(pixels, dtype=np.float64).reshape(sides["height"], sides["width"])


def predict_drawing(predictor: Predictor, drawing: np.ndarray) -> dict[str, Any]:
    """The response to a drawing: the MNIST-form image and each model's probabilities."""
    try:
        digit = images.to_mnist(drawing / 255.0, source="the drawing")
    except DataError as e:
        raise RequestError(
            HTTPStatus.UNPROCESSABLE_ENTITY, f"draw a digit: {e}", empty=True
        ) from None
    outputs = predictor.predict(digit[None])
    models = []
    for name in predictor.names:
        probabilities = np.asarray(outputs[name], dtype=np.float64).reshape(-1)
        if probabilities.shape != (10,) or not np.isfinite(probabilities).all():
            raise RuntimeError(f"model {name} returned {probabilities.shape} probabilities")
        models.append(
            {
                "name": name,
                "probabilities": [round(float(p), 6) for p in probabilities],
                "top": int(probabilities.argmax()),
            }
        )
    return {"image": digit.tolist(), "models": models}
