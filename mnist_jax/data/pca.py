"""PCA-reduced inputs: a projection fitted on the training split, applied on the device.

The fit runs once on the host, in float64, on the normalised training images that the run
actually trains on (after the validation split and `train_fraction`), so nothing about the
validation or test images leaks into the inputs. The dataset itself stays uint8 on the device;
models.projected applies it to a normalised batch inside the compiled step.
"""

import dataclasses

import numpy as np

from mnist_jax.core.errors import ConfigError
from mnist_jax.data.preprocess import MNIST_MEAN, MNIST_STD

NUM_PIXELS = 28 * 28
_FIT_CHUNK = 8192  # rows per block of the covariance sum: bounds host memory at ~50 MB


@dataclasses.dataclass(frozen=True, eq=False)
class Projection:
    """x -> (x - mean) @ components: mean (784,), components (784, k) with orthonormal columns."""

    mean: np.ndarray
    components: np.ndarray
    explained_variance_ratio: np.ndarray  # (k,): share of the training variance per component

    @property
    def num_components(self) -> int:
        return self.components.shape[1]


def check_components(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 0 <= k <= NUM_PIXELS:
        raise ConfigError(
            f"data.pca_components={k!r} is not an integer in [0, {NUM_PIXELS}] (0 = no PCA)"
        )


def _normalized_rows(images: np.ndarray) -> np.ndarray:
    # Same arithmetic as preprocess.normalize, in numpy and flattened.
    x = images.reshape(len(images), -1).astype(np.float64) / 255.0
    return (x - MNIST_MEAN) / MNIST_STD


def fit(images: np.ndarray, k: int) -> Projection:
    """The top-`k` principal axes of uint8 images (N, 28, 28), by eigh of the covariance.

    Signs are fixed (largest-magnitude loading positive) so the same data gives the same
    projection on every machine.
    """
    check_components(k)
    if k == 0:
        raise ConfigError("pca.fit needs data.pca_components >= 1")
    n = len(images)
    if n < 2:
        raise ConfigError(f"PCA needs at least 2 training images, got {n}")
    total = np.zeros(NUM_PIXELS)
    scatter = np.zeros((NUM_PIXELS, NUM_PIXELS))
    for start in range(0, n, _FIT_CHUNK):
        x = _normalized_rows(images[start : start + _FIT_CHUNK])
        total += x.sum(0)
        scatter += x.T @ x
    mean = total / n
    cov = (scatter - n * np.outer(mean, mean)) / (n - 1)
    eigvals, eigvecs = np.linalg.eigh(cov)  # ascending
    order = np.argsort(eigvals)[::-1][:k]
    vals, vecs = np.clip(eigvals[order], 0, None), eigvecs[:, order]
    flip = np.sign(vecs[np.abs(vecs).argmax(0), np.arange(k)])
    vecs = vecs * np.where(flip == 0, 1, flip)
    ratio = vals / max(np.clip(eigvals, 0, None).sum(), 1e-12)
    return Projection(mean.astype(np.float32), vecs.astype(np.float32), ratio)
