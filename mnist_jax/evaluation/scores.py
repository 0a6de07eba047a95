"""The metrics of the comparison as one table: a new metric is one `Metric` entry (and its test).

Every metric a model's predictions determine (`of` given) is recorded for every run, every seed
ensemble and every int8 model, summarised over seeds as mean, std and 95% interval, and shown
in report.md's tables; the others are measured on the run itself (training time, speed, size)
and summarised and shown the same way. comparison.py, runner.py, quantize.py and report.py read
this table instead of naming metrics themselves.
"""

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from mnist_jax.evaluation import metrics


@dataclasses.dataclass(frozen=True)
class Predictions:
    """A model's outputs on a labelled set; the metrics are functions of this.

    `logits` are the model's (or, for an ensemble, the log of its averaged probabilities), and
    the loss is computed from them, so that each model's loss is what it was trained on."""

    labels: np.ndarray
    logits: np.ndarray
    probs: np.ndarray
    ece_bins: int = 15

    @classmethod
    def from_logits(cls, labels: np.ndarray, logits: np.ndarray, ece_bins: int) -> "Predictions":
        return cls(labels, logits, metrics.softmax(logits), ece_bins)

    @classmethod
    def from_probs(cls, labels: np.ndarray, probs: np.ndarray, ece_bins: int) -> "Predictions":
        return cls(labels, np.log(np.maximum(probs, 1e-300)), probs, ece_bins)

    @functools.cached_property
    def predicted(self) -> np.ndarray:
        return self.probs.argmax(-1)

    @functools.cached_property
    def correct(self) -> np.ndarray:
        return self.predicted == self.labels

    @functools.cached_property
    def confusion(self) -> np.ndarray:
        return metrics.confusion_matrix(self.labels, self.predicted)

    @functools.cached_property
    def per_class(self) -> dict[str, Any]:
        return metrics.per_class_report(self.confusion)

    @functools.cached_property
    def calibration(self) -> dict[str, Any]:
        return metrics.calibration(self.probs, self.labels, self.ece_bins)


@dataclasses.dataclass(frozen=True)
class Metric:
    name: str  # its key in comparison.json
    header: str  # its column in report.md
    fmt: str  # format spec of the shown value, after `scale`
    scale: float = 1.0
    of: Callable[[Predictions], float] | None = None  # None: measured on the run (per run only)
    interval: bool = False  # report.md also shows the 95% interval of the mean over seeds

    def show(self, value: float | None) -> str:
        return "n/a" if value is None else format(self.scale * value, self.fmt)


METRICS = (
    Metric("accuracy", "test accuracy (%)", ".2f", 100, lambda p: float(np.mean(p.correct)), True),
    Metric("loss", "test loss", ".4f", of=lambda p: metrics.cross_entropy(p.labels, p.logits)),
    Metric("ece", "ECE (%)", ".2f", 100, lambda p: p.calibration["ece"]),
    Metric("macro_f1", "macro F1", ".4f", of=lambda p: p.per_class["macro_avg"]["f1"]),
    Metric("train_seconds", "training time (s)", ".0f"),
    Metric("epochs_run", "epochs", ".0f"),
    Metric("throughput_images_per_second", "throughput (img/s)", ",.0f"),
    Metric("latency_ms_median", "latency (ms)", ".2f"),
    Metric("checkpoint_bytes", "checkpoint (MB)", ".2f", 1e-6),
)


def of_predictions() -> tuple[Metric, ...]:
    """The metrics that a set of predictions determines (runs, ensembles, int8 models)."""
    return tuple(m for m in METRICS if m.of is not None)


def of_runs() -> tuple[Metric, ...]:
    """The metrics measured on each run itself."""
    return tuple(m for m in METRICS if m.of is None)


def score(predictions: Predictions) -> dict[str, float]:
    """Every prediction metric of `predictions`, by name."""
    return {m.name: m.of(predictions) for m in of_predictions()}
