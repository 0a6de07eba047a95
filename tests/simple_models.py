"""Small real MNIST classifiers fitted with numpy in a second, for tests that need a model
without training one: they follow mnist_jax.api.load_run's interface (`.name`,
`.predict_proba(uint8 (N, 28, 28)) -> (N, 10)`)."""

import numpy as np


def _flat(images: np.ndarray) -> np.ndarray:
    return np.asarray(images, dtype=np.float64).reshape(len(images), -1) / 255.0


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


class NearestCentroid:
    """Class means of the training images; probabilities: softmax of -squared distance / 4."""

    name = "centroid"

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        x = _flat(images)
        self.centroids = np.stack([x[labels == k].mean(axis=0) for k in range(10)])

    def distances(self, images: np.ndarray) -> np.ndarray:
        x = _flat(images)
        c = self.centroids
        return (x**2).sum(1)[:, None] - 2 * x @ c.T + (c**2).sum(1)[None, :]

    def predict(self, images: np.ndarray) -> np.ndarray:
        return self.distances(images).argmin(axis=1)

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        return _softmax(-self.distances(images) / 4.0)


class LeastSquares:
    """A ridge-regularised least-squares linear classifier on one-hot targets."""

    name = "linear"

    def __init__(self, images: np.ndarray, labels: np.ndarray, ridge: float = 10.0):
        x = np.hstack([_flat(images), np.ones((len(images), 1))])
        targets = np.eye(10)[labels]
        self.weights = np.linalg.solve(x.T @ x + ridge * np.eye(x.shape[1]), x.T @ targets)

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        x = np.hstack([_flat(images), np.ones((len(images), 1))])
        return _softmax(10.0 * (x @ self.weights))
